import { useMemo } from 'preact/hooks';
import { api } from '../api.js';
import { Chart } from '../chart.jsx';
import { num, secs, when } from '../fmt.js';
import { t } from '../i18n.js';
import { enc } from '../router.js';
import { ErrorBox, Loading, RangePicker, Table, secsOf, useData, useWindow, zoomTo } from '../ui.jsx';
import { ServerHeader, rangeQs } from './common.jsx';

function Pct({ v }) {
  const cls = v >= 50 ? 'crit' : v >= 20 ? 'warn' : '';
  return (
    <span class="bar" role="meter" aria-valuenow={v.toFixed(1)}>
      <span class={'fill ' + cls} style={{ width: `${Math.min(100, v)}%` }} />
      <span class="txt">{v.toFixed(2)} %</span>
    </span>
  );
}

export function WraparoundPage({ name, query }) {
  const win = useWindow(query, '7d');
  const w = useData(() => api(`/servers/${enc(name)}/wraparound`), [name], { every: 30000 });
  const hist = useData(() => api(`/servers/${enc(name)}/series/activity?${rangeQs(win)}`), [name, rangeQs(win)]);
  const d = w.data;
  const chart = useMemo(() => {
    const h = hist.data;
    if (!h) return null;
    return { x: secsOf(h.time), series: [['max_xid_age', 'XID age'], ['max_mxid_age', 'MXID age'], ['oldest_xmin_age', 'oldest xmin age']].filter(([k]) => h.series[k]).map(([k, label]) => ({ label, values: h.series[k] })) };
  }, [hist.data]);
  return (
    <section>
      <ServerHeader name={name} tab="/wraparound" />
      <ErrorBox error={w.error} />
      <Loading when={!d && w.loading} />
      {d ? (
        <>
          <p class="muted">
            autovacuum_freeze_max_age {num(d.autovacuum_freeze_max_age)} · autovacuum_multixact_freeze_max_age {num(d.autovacuum_multixact_freeze_max_age)} · vacuum_failsafe_age {num(d.vacuum_failsafe_age)}
          </p>
          <Table
            testid="wraparound"
            rows={d.databases}
            cols={[
              { key: 'database', label: t('Database') },
              { key: 'xid_age', label: t('XID age'), num: true, render: (r) => num(r.xid_age) },
              { key: 'xid_used_pct', label: t('Used'), num: true, render: (r) => <Pct v={r.xid_used_pct} /> },
              { key: 'mxid_age', label: t('MXID age'), num: true, render: (r) => num(r.mxid_age) },
              { key: 'mxid_used_pct', label: t('Used'), num: true, render: (r) => <Pct v={r.mxid_used_pct} /> },
            ]}
          />
          <h2>{t('Xmin holders')}</h2>
          <Table
            testid="holders"
            rows={d.holders}
            cols={[
              { key: 'kind', label: t('Type') },
              { key: 'name', label: t('Name') },
              { key: 'pid', label: 'pid', num: true },
              { key: 'user', label: t('User') },
              { key: 'database', label: t('Database') },
              { key: 'state', label: t('State') },
              { key: 'age', label: 'age', num: true, render: (r) => num(r.age) },
              { key: 'since', label: t('Duration'), render: (r) => (r.since ? secs((Date.now() - Date.parse(r.since)) / 1000) : '—'), sort: (r) => r.since },
            ]}
          />
        </>
      ) : null}
      <RangePicker win={win} />
      {chart && chart.series.length ? <div class="charts"><Chart title={t('XID age')} x={chart.x} series={chart.series} format={(v) => num(v)} onZoom={zoomTo} win={win} /></div> : null}
    </section>
  );
}
