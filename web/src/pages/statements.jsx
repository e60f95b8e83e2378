import { useMemo } from 'preact/hooks';
import { api, q } from '../api.js';
import { Chart } from '../chart.jsx';
import { bytes, ms, num, pct } from '../fmt.js';
import { t } from '../i18n.js';
import { enc, setQuery } from '../router.js';
import { ErrorBox, Loading, RangePicker, Table, secsOf, useData, useWindow, zoomTo } from '../ui.jsx';
import { ServerHeader } from './common.jsx';

const SORTS = ['total_time', 'calls', 'mean_time', 'rows', 'shared_blks_read', 'temp_blks', 'wal_bytes'];

function Detail({ name, queryid, win }) {
  const d = useData(() => api(`/servers/${enc(name)}/statements/${queryid}${q({ from: win.from.toISOString(), to: win.to.toISOString() })}`), [name, queryid, win.from.getTime(), win.to.getTime()]);
  const s = d.data;
  const x = useMemo(() => (s ? secsOf(s.time) : []), [s]);
  if (d.error) return <ErrorBox error={d.error} />;
  if (!s) return <Loading when />;
  return (
    <div class="detail" data-testid="statement-detail">
      <h3>queryid {queryid}</h3>
      <pre class="query">{s.query}</pre>
      <div class="charts">
        <Chart title={t('Calls')} x={x} series={[{ label: 'calls/s', values: s.calls_per_sec }]} format={(v) => num(v, 2) + '/s'} onZoom={zoomTo} win={win} />
        <Chart title={t('Mean time')} x={x} series={[{ label: t('Mean time'), values: s.mean_time_ms }]} format={ms} onZoom={zoomTo} win={win} />
        <Chart title={t('Total time')} x={x} series={[{ label: 'ms/s', values: s.exec_ms_per_sec }]} format={(v) => num(v, 1) + ' ms/s'} onZoom={zoomTo} win={win} />
      </div>
    </div>
  );
}

export function StatementsPage({ name, query }) {
  const win = useWindow(query);
  const sort = SORTS.includes(query.sort) ? query.sort : 'total_time';
  const qs = q({ from: win.from.toISOString(), to: win.to.toISOString(), sort, db: query.db, limit: 100 });
  const top = useData(() => api(`/servers/${enc(name)}/statements${qs}`), [name, qs]);
  const cols = [
    { key: 'query', label: t('Query'), cls: 'q', render: (s) => <a href="#" onClick={(e) => { e.preventDefault(); setQuery({ queryid: s.queryid_text }); }}><code title={s.query}>{s.query || s.queryid_text}</code></a> },
    { key: 'database', label: t('Database') },
    { key: 'user', label: t('User') },
    { key: 'calls', label: t('Calls'), num: true, render: (s) => num(s.calls) },
    { key: 'total_exec_time_ms', label: t('Total time'), num: true, render: (s) => ms(s.total_exec_time_ms) },
    { key: 'mean_time_ms', label: t('Mean time'), num: true, render: (s) => ms(s.mean_time_ms) },
    { key: 'rows', label: t('Rows'), num: true, render: (s) => num(s.rows) },
    { key: 'shared_blks_read', label: 'blks read', num: true, render: (s) => num(s.shared_blks_read) },
    { key: 'wal_bytes', label: 'WAL', num: true, render: (s) => bytes(s.wal_bytes) },
    { key: 'time_share', label: t('Share'), num: true, render: (s) => pct(s.time_share) },
  ];
  return (
    <section>
      <ServerHeader name={name} tab="/statements" />
      <RangePicker win={win} />
      <div class="filters">
        <label>
          sort
          <select value={sort} onChange={(e) => setQuery({ sort: e.target.value })}>
            {SORTS.map((s) => <option value={s}>{s}</option>)}
          </select>
        </label>
        <label>
          {t('Database')} <input value={query.db || ''} size="12" onChange={(e) => setQuery({ db: e.target.value })} />
        </label>
      </div>
      <ErrorBox error={top.error} />
      <Loading when={!top.data && top.loading} />
      {top.data ? <Table testid="statements" cols={cols} rows={top.data.statements} rowKey={(s) => `${s.queryid_text}/${s.database}/${s.user}`} empty={t('Statements need pg_stat_statements on the server')} /> : null}
      {query.queryid ? <Detail name={name} queryid={query.queryid} win={win} /> : null}
    </section>
  );
}
