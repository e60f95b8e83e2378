import { useMemo } from 'preact/hooks';
import { api } from '../api.js';
import { Chart } from '../chart.jsx';
import { bytes, num, pct, secs, perSec } from '../fmt.js';
import { t } from '../i18n.js';
import { Link, enc } from '../router.js';
import { ErrorBox, Loading, RangePicker, Table, secsOf, useData, useWindow, zoomTo } from '../ui.jsx';
import { ServerHeader, rangeQs } from './common.jsx';

/** Runs `jobs` (functions returning promises) at most `n` at a time. */
async function pool(jobs, n = 6) {
  const out = new Array(jobs.length);
  let i = 0;
  const worker = async () => {
    while (i < jobs.length) {
      const k = i++;
      try {
        out[k] = await jobs[k]();
      } catch (e) {
        out[k] = null;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, jobs.length) }, worker));
  return out;
}

export function ServerPage({ name, query }) {
  const win = useWindow(query);
  const qs = rangeQs(win);
  const key = [name, qs];
  const hist = useData(() => api(`/servers/${enc(name)}/history?${qs}`), key);
  const act = useData(() => api(`/servers/${enc(name)}/series/activity?${qs}`), key);
  const ckpt = useData(() => api(`/servers/${enc(name)}/series/checkpointer?${qs}`), key);
  const wal = useData(() => api(`/servers/${enc(name)}/series/wal?${qs}`), key);
  const repl = useData(() => api(`/servers/${enc(name)}/series/replication?${qs}`), key);
  const sizes = useData(
    () => api(`/server/${enc(name)}/stats?start_date=${encodeURIComponent(win.from.toISOString())}&end_date=${encodeURIComponent(win.to.toISOString())}`),
    key,
  );
  const dbs = useData(async () => {
    const st = await api(`/server/${enc(name)}/stats?start_date=${encodeURIComponent(new Date(Date.now() - 86400000).toISOString())}`);
    const infos = await pool(st.databases.map((d) => () => api(`/server/${enc(name)}/db/${enc(d.name)}`)));
    return st.databases.map((d, i) => ({ ...d, ...(infos[i] || {}), exists: d.exists }));
  }, [name]);

  const h = hist.data;
  const x = useMemo(() => (h ? secsOf(h.time) : []), [h]);
  const main = useMemo(() => {
    if (!h) return null;
    return {
      xacts: [
        { label: t('Transactions'), values: h.xact_per_sec },
        { label: t('Commits'), values: h.commits_per_sec },
        { label: t('Rollbacks'), values: h.rollbacks_per_sec },
      ],
      cache: [{ label: t('Cache hit ratio'), values: h.cache_hit_ratio }],
      disk: h.disk_used_bytes ? [
        { label: t('Used'), values: h.disk_used_bytes },
        { label: t('Total'), values: h.disk_total_bytes },
      ] : [],
      avail: h.availability ? [{ label: t('Availability'), values: h.availability }] : [],
    };
  }, [h]);

  const fam = (d, keys, scale = 1) => {
    if (!d) return null;
    return { x: secsOf(d.time), series: keys.filter(([k]) => d.series[k]).map(([k, label]) => ({ label, values: d.series[k].map((v) => (v == null ? null : v * scale)) })) };
  };
  const sessions = useMemo(() => fam(act.data, [['active', 'active'], ['idle', 'idle'], ['idle_in_xact', 'idle in transaction'], ['waiting_lock', 'waiting (lock)']]), [act.data]);
  const checkpoints = useMemo(() => fam(ckpt.data, [['checkpoints_timed_per_sec', 'timed'], ['checkpoints_req_per_sec', 'requested']], 3600), [ckpt.data]);
  const walSeries = useMemo(() => fam(wal.data, [['wal_generated_bytes_per_sec', t('WAL generated')]]), [wal.data]);
  const lag = useMemo(() => fam(repl.data, [['replay_lag_secs', 'replay lag, s'], ['write_lag_secs', 'write lag, s']]), [repl.data]);
  const lagBytes = useMemo(() => fam(repl.data, [['replay_lag_bytes', 'replay lag']]), [repl.data]);

  const perDb = useMemo(() => {
    const d = sizes.data;
    if (!d) return null;
    const times = [...new Set(d.connection_timeline.map((p) => p.ts))].sort();
    const idx = new Map(times.map((tt, i) => [tt, i]));
    const byDb = new Map();
    for (const p of d.connection_timeline) {
      if (!byDb.has(p.datname)) byDb.set(p.datname, new Array(times.length).fill(null));
      byDb.get(p.datname)[idx.get(p.ts)] = p.size_gb * 1024 ** 3;
    }
    const top = [...byDb.entries()].sort((a, b) => Math.max(...b[1]) - Math.max(...a[1])).slice(0, 8);
    return { x: secsOf(times), series: top.map(([db, values]) => ({ label: db, values })) };
  }, [sizes.data]);

  const dbCols = [
    { key: 'name', label: t('Name'), render: (d) => (
      <>
        <Link href={`/servers/${enc(name)}/db/${enc(d.name)}`}>{d.name}</Link>
        {d.exists ? null : <span class="badge down">{t('dropped')}</span>}
      </>
    ) },
    { key: 'size_bytes', label: t('Size'), num: true, render: (d) => bytes(d.size_bytes) },
    { key: 'growth_24h_bytes', label: t('Growth 24 h'), num: true, render: (d) => bytes(d.growth_24h_bytes) },
    { key: 'growth_7d_bytes', label: t('Growth 7 d'), num: true, render: (d) => bytes(d.growth_7d_bytes) },
    { key: 'growth_30d_bytes', label: t('Growth 30 d'), num: true, render: (d) => bytes(d.growth_30d_bytes) },
    { key: 'numbackends', label: t('Connections'), num: true },
    { key: 'frozen_xid_age', label: t('XID age'), num: true, render: (d) => num(d.frozen_xid_age) },
  ];

  return (
    <section>
      <ServerHeader name={name} tab="" />
      <RangePicker win={win} />
      <ErrorBox error={hist.error} />
      <Loading when={!h && hist.loading} />
      {main ? (
        <div class="charts">
          <Chart title={t('Transactions')} x={x} series={main.xacts} format={perSec} onZoom={zoomTo} win={win} />
          {sessions ? <Chart title={t('Sessions by state')} x={sessions.x} series={sessions.series} format={(v) => num(v, 1)} stacked onZoom={zoomTo} win={win} /> : null}
          <Chart title={t('Cache hit ratio')} x={x} series={main.cache} format={(v) => pct(v, 2)} onZoom={zoomTo} win={win} />
          {perDb ? <Chart title={t('Database sizes')} x={perDb.x} series={perDb.series} format={(v) => bytes(v, 2)} onZoom={zoomTo} win={win} /> : null}
          {main.disk.length ? <Chart title={t('Disk')} x={x} series={main.disk} format={(v) => bytes(v, 0)} onZoom={zoomTo} win={win} /> : null}
          {main.avail.length ? <Chart title={t('Availability')} x={x} series={main.avail} format={(v) => pct(v, 0)} yMin={0} onZoom={zoomTo} win={win} /> : null}
          {checkpoints ? <Chart title={t('Checkpoints per hour')} x={checkpoints.x} series={checkpoints.series} format={(v) => num(v, 1)} onZoom={zoomTo} win={win} /> : null}
          {walSeries ? <Chart title={t('WAL generated')} x={walSeries.x} series={walSeries.series} format={(v) => bytes(v) + '/s'} onZoom={zoomTo} win={win} /> : null}
          {lag && lag.series.length ? <Chart title={t('Replication lag')} x={lag.x} series={lag.series} format={secs} onZoom={zoomTo} win={win} /> : null}
          {lagBytes && lagBytes.series.length ? <Chart title={t('Replication lag') + ', bytes'} x={lagBytes.x} series={lagBytes.series} format={(v) => bytes(v)} onZoom={zoomTo} win={win} /> : null}
        </div>
      ) : null}
      <h2>{t('Databases')}</h2>
      <ErrorBox error={dbs.error} />
      <Loading when={!dbs.data && dbs.loading} />
      {dbs.data ? <Table testid="databases" cols={dbCols} rows={dbs.data} rowKey={(d) => d.name} initial={{ key: 'size_bytes', desc: true }} rowClass={(d) => (d.exists ? '' : 'dropped')} /> : null}
    </section>
  );
}
