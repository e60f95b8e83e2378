import { useMemo } from 'preact/hooks';
import { api } from '../api.js';
import { Chart } from '../chart.jsx';
import { bytes, num, pct, when, perSec } from '../fmt.js';
import { t } from '../i18n.js';
import { Link, enc } from '../router.js';
import { ErrorBox, Loading, RangePicker, secsOf, useData, useWindow, zoomTo } from '../ui.jsx';
import { ServerHeader, rangeQs } from './common.jsx';

export function DatabasePage({ name, db, query }) {
  const win = useWindow(query);
  const qs = rangeQs(win);
  const info = useData(() => api(`/server/${enc(name)}/db/${enc(db)}`), [name, db]);
  const hist = useData(() => api(`/servers/${enc(name)}/databases/${enc(db)}/history?${qs}`), [name, db, qs]);
  const h = hist.data;
  const x = useMemo(() => (h ? secsOf(h.time) : []), [h]);
  const s = useMemo(() => h && {
    xacts: [
      { label: t('Commits'), values: h.commits_per_sec },
      { label: t('Rollbacks'), values: h.rollbacks_per_sec },
    ],
    tuples: [
      ['returned', h.tup_returned_per_sec], ['fetched', h.tup_fetched_per_sec], ['inserted', h.tup_inserted_per_sec],
      ['updated', h.tup_updated_per_sec], ['deleted', h.tup_deleted_per_sec],
    ].map(([label, values]) => ({ label, values })),
    cache: [{ label: t('Cache hit ratio'), values: h.cache_hit_ratio }],
    size: [{ label: t('Size'), values: h.size_bytes }],
    backends: [{ label: t('Connections'), values: h.numbackends }],
    temp: [{ label: 'temp', values: h.temp_bytes_per_sec }],
  }, [h]);
  const d = info.data;
  return (
    <section>
      <ServerHeader name={name} tab="" />
      <h2>
        {t('Database')} <code>{db}</code> {d && d.dropped_at ? <span class="badge down">{t('dropped')} {when(d.dropped_at)}</span> : null}
      </h2>
      <ErrorBox error={info.error} />
      {d ? (
        <dl class="facts-grid">
          <dt>{t('Size')}</dt><dd>{bytes(d.size_bytes)}</dd>
          <dt>{t('Growth 24 h')}</dt><dd>{bytes(d.growth_24h_bytes)}</dd>
          <dt>{t('Growth 7 d')}</dt><dd>{bytes(d.growth_7d_bytes)}</dd>
          <dt>{t('Growth 30 d')}</dt><dd>{bytes(d.growth_30d_bytes)}</dd>
          <dt>{t('Connections')}</dt><dd>{num(d.numbackends)}</dd>
          <dt>{t('XID age')}</dt><dd>{num(d.frozen_xid_age)}</dd>
          <dt>owner</dt><dd>{d.owner || '—'}</dd>
          <dt>encoding</dt><dd>{d.encoding || '—'}</dd>
          <dt>{t('Created')}</dt><dd>{when(d.first_seen)}</dd>
          <dt>stats_reset</dt><dd>{when(d.stats_reset)}</dd>
        </dl>
      ) : null}
      <p>
        <Link href={`/servers/${enc(name)}/statements?db=${enc(db)}`}>{t('Statements')} →</Link>{' '}
        <Link href={`/servers/${enc(name)}/activity?database=${enc(db)}`}>{t('Activity')} →</Link>
      </p>
      <RangePicker win={win} />
      <ErrorBox error={hist.error} />
      <Loading when={!h && hist.loading} />
      {s ? (
        <div class="charts">
          <Chart title={t('Transactions')} x={x} series={s.xacts} format={perSec} onZoom={zoomTo} win={win} />
          <Chart title="Tuples" x={x} series={s.tuples} format={perSec} onZoom={zoomTo} win={win} />
          <Chart title={t('Cache hit ratio')} x={x} series={s.cache} format={(v) => pct(v, 2)} onZoom={zoomTo} win={win} />
          <Chart title={t('Size')} x={x} series={s.size} format={(v) => bytes(v)} onZoom={zoomTo} win={win} />
          <Chart title={t('Connections')} x={x} series={s.backends} format={(v) => num(v, 1)} onZoom={zoomTo} win={win} />
          <Chart title="Temp files" x={x} series={s.temp} format={(v) => bytes(v) + '/s'} onZoom={zoomTo} win={win} />
        </div>
      ) : null}
    </section>
  );
}
