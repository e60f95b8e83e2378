import { useMemo } from 'preact/hooks';
import { api } from '../api.js';
import { Chart } from '../chart.jsx';
import { bytes, num, secs, when } from '../fmt.js';
import { t } from '../i18n.js';
import { enc } from '../router.js';
import { ErrorBox, Loading, RangePicker, Table, secsOf, useData, useWindow, zoomTo } from '../ui.jsx';
import { ServerHeader, rangeQs } from './common.jsx';

export function ReplicationPage({ name, query }) {
  const win = useWindow(query, '6h');
  const qs = rangeQs(win);
  const live = useData(() => api(`/servers/${enc(name)}/replication`), [name], { every: 10000 });
  const standbys = useData(() => api(`/servers/${enc(name)}/series/replication?${qs}`), [name, qs]);
  const slots = useData(() => api(`/servers/${enc(name)}/series/slots?${qs}`), [name, qs]);
  const r = live.data;
  const lagChart = useMemo(() => {
    const d = standbys.data;
    if (!d) return null;
    const series = Object.entries(d.by).map(([app, cols]) => ({ label: app, values: cols.replay_lag_bytes || [] }));
    return { x: secsOf(d.time), series };
  }, [standbys.data]);
  const slotChart = useMemo(() => {
    const d = slots.data;
    if (!d) return null;
    return { x: secsOf(d.time), series: Object.entries(d.by).map(([slot, cols]) => ({ label: slot, values: cols.retained_bytes || [] })) };
  }, [slots.data]);
  return (
    <section>
      <ServerHeader name={name} tab="/replication" />
      <ErrorBox error={live.error} />
      <Loading when={!r && live.loading} />
      {r && !r.reachable ? <div class="error">{t('unreachable')}: {r.error}</div> : null}
      {r ? (
        <>
          <p>
            {t('Role')}: <b>{r.role === 'standby' ? t('Standby') : t('Primary')}</b> · {t('Current LSN')}: <code>{r.current_lsn || '—'}</code>
          </p>
          {r.wal_receiver ? (
            <dl class="facts-grid">
              <dt>status</dt><dd>{r.wal_receiver.status}</dd>
              <dt>sender</dt><dd>{r.wal_receiver.sender_host}:{r.wal_receiver.sender_port}</dd>
              <dt>slot</dt><dd>{r.wal_receiver.slot_name || '—'}</dd>
              <dt>replay lag</dt><dd>{bytes(r.wal_receiver.replay_lag_bytes)}</dd>
              <dt>replay delay</dt><dd>{secs(r.wal_receiver.replay_delay_secs)}</dd>
              <dt>last replay</dt><dd>{when(r.wal_receiver.last_replay_at)}</dd>
            </dl>
          ) : null}
          <h2>{t('Standbys')}</h2>
          <Table
            testid="standbys"
            rows={r.standbys}
            cols={[
              { key: 'application', label: t('Application') },
              { key: 'client_addr', label: t('Client') },
              { key: 'state', label: t('State') },
              { key: 'sync_state', label: t('Sync') },
              { key: 'replay_lsn', label: 'replay_lsn' },
              { key: 'replay_lag_bytes', label: t('Lag'), num: true, render: (s) => bytes(s.replay_lag_bytes) },
              { key: 'replay_lag_secs', label: `${t('Lag')}, s`, num: true, render: (s) => secs(s.replay_lag_secs) },
              { key: 'xmin_age', label: 'xmin age', num: true, render: (s) => num(s.xmin_age) },
            ]}
          />
          <h2>{t('Slots')}</h2>
          <Table
            testid="slots"
            rows={r.slots}
            rowClass={(s) => (s.active ? '' : 'warn')}
            cols={[
              { key: 'slot_name', label: t('Name') },
              { key: 'slot_type', label: t('Type') },
              { key: 'database', label: t('Database') },
              { key: 'active', label: t('Active'), render: (s) => (s.active ? '✓' : '✗') },
              { key: 'retained_bytes', label: t('Retained WAL'), num: true, render: (s) => bytes(s.retained_bytes) },
              { key: 'wal_status', label: 'wal_status' },
              { key: 'safe_wal_size', label: 'safe_wal_size', num: true, render: (s) => bytes(s.safe_wal_size) },
              { key: 'xmin_age', label: 'xmin age', num: true, render: (s) => num(s.xmin_age) },
            ]}
          />
        </>
      ) : null}
      <RangePicker win={win} />
      <div class="charts">
        {lagChart && lagChart.series.length ? <Chart title={t('Replication lag')} x={lagChart.x} series={lagChart.series} format={(v) => bytes(v)} onZoom={zoomTo} win={win} /> : null}
        {slotChart && slotChart.series.length ? <Chart title={t('Retained WAL')} x={slotChart.x} series={slotChart.series} format={(v) => bytes(v)} onZoom={zoomTo} win={win} /> : null}
      </div>
    </section>
  );
}
