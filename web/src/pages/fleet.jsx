import { useMemo } from 'preact/hooks';
import { api } from '../api.js';
import { Sparkline } from '../chart.jsx';
import { ago, bytes, num } from '../fmt.js';
import { t } from '../i18n.js';
import { Link, enc, setQuery } from '../router.js';
import { ErrorBox, Loading, Table, useData } from '../ui.jsx';

export function statusOf(s) {
  if (!s.enabled) return 'disabled';
  if (s.status === 'pending' && s.reachable == null) return 'pending';
  if (s.reachable === false || /error/.test(s.status || '')) return 'down';
  return 'up';
}

export function StatusBadge({ server }) {
  const st = statusOf(server);
  return (
    <span class={'badge ' + st} title={server.error || server.status}>
      {t(st)}
    </span>
  );
}

function Bar({ used, total, warn = 0.8, crit = 0.9, label }) {
  if (used == null || !total) return <span class="muted">—</span>;
  const r = Math.min(1, used / total);
  return (
    <span class="bar" title={label} role="meter" aria-valuenow={Math.round(r * 100)} aria-valuemin="0" aria-valuemax="100" aria-label={label}>
      <span class={'fill' + (r >= crit ? ' crit' : r >= warn ? ' warn' : '')} style={{ width: `${(r * 100).toFixed(1)}%` }} />
      <span class="txt">{label}</span>
    </span>
  );
}

const STALE_SECS = 3 * 3600;

export function Fleet({ query }) {
  const servers = useData(() => api('/servers'), [], { every: 10000 });
  const trends = useData(() => api('/fleet/trends?hours=6'), [], { every: 60000 });
  const search = (query.q || '').toLowerCase();
  const filter = query.status || 'all';

  const byName = useMemo(() => {
    const m = new Map();
    for (const s of (trends.data && trends.data.servers) || []) m.set(s.name, s);
    return m;
  }, [trends.data]);

  const rows = useMemo(() => {
    const list = servers.data || [];
    return list
      .map((s) => {
        const tr = byName.get(s.name);
        const conns = s.connections ? Object.values(s.connections).reduce((a, b) => a + b, 0) : null;
        const used = s.total_space != null && s.free_space != null ? s.total_space - s.free_space : null;
        return { ...s, st: statusOf(s), conns, used, tr, tps: tr && tr.tps.length ? tr.tps[tr.tps.length - 1] : null, age: tr && tr.last_collected_at ? (Date.now() - Date.parse(tr.last_collected_at)) / 1000 : null };
      })
      .filter((s) => filter === 'all' || s.st === filter)
      .filter((s) => !search || `${s.name} ${s.host} ${s.description || ''} ${s.version || ''}`.toLowerCase().includes(search));
  }, [servers.data, byName, search, filter]);

  const counts = useMemo(() => {
    const c = { all: 0, up: 0, down: 0, disabled: 0, pending: 0 };
    for (const s of servers.data || []) {
      c.all++;
      c[statusOf(s)]++;
    }
    return c;
  }, [servers.data]);

  const cols = [
    { key: 'name', width: '15%', label: t('Name'), render: (s) => <Link href={`/servers/${enc(s.name)}`}>{s.name}</Link> },
    { key: 'st', width: '7%', label: t('Status'), render: (s) => <StatusBadge server={s} /> },
    { key: 'version', width: '12%', label: t('Version'), render: (s) => (s.version ? s.version.split(' ')[0] : '—') + (s.in_recovery ? ` · ${t('Standby').toLowerCase()}` : ''), sort: (s) => s.version_num },
    { key: 'uptime_hours', width: '7%', label: t('Uptime'), num: true, render: (s) => (s.uptime_hours == null ? '—' : s.uptime_hours >= 48 ? `${num(s.uptime_hours / 24, 1)} d` : s.uptime_hours >= 1 ? `${num(s.uptime_hours, 1)} h` : `${Math.round(s.uptime_hours * 60)} min`) },
    { key: 'conns', width: '14%', label: t('Connections'), num: true, sort: (s) => (s.max_connections ? s.conns / s.max_connections : s.conns), render: (s) => (s.conns == null ? '—' : <Bar used={s.conns} total={s.max_connections} label={`${s.conns} / ${s.max_connections ?? '?'}`} />) },
    { key: 'tps', width: '19%', label: t('TPS'), num: true, render: (s) => (s.tr && s.tr.tps.length ? (
      <span class="tps">
        <Sparkline values={s.tr.tps} />
        <span>{num(s.tps, 1)}</span>
      </span>
    ) : '—') },
    { key: 'used', width: '16%', label: t('Disk'), num: true, sort: (s) => (s.total_space ? s.used / s.total_space : null), render: (s) => <Bar used={s.used} total={s.total_space} label={s.used == null ? '' : `${bytes(s.used, 0)} / ${bytes(s.total_space, 0)}`} /> },
    { key: 'age', width: '10%', label: t('Data age'), num: true, render: (s) => (s.age == null ? '—' : <span class={s.age > STALE_SECS ? 'stale' : ''} title={s.tr.last_collected_at}>{ago(s.tr.last_collected_at)}</span>) },
  ];

  return (
    <section class="fleet">
      <div class="toolbar">
        <h1>{t('Servers')} <small class="muted">{counts.all}</small></h1>
        <input type="search" placeholder={t('Search')} aria-label={t('Search')} value={query.q || ''} onInput={(e) => setQuery({ q: e.target.value })} />
        <div class="seg" role="group" aria-label={t('Filter')}>
          {['all', 'up', 'down', 'disabled'].map((k) => (
            <button class={filter === k ? 'on' : ''} aria-pressed={filter === k} onClick={() => setQuery({ status: k === 'all' ? null : k })}>
              {t(k === 'all' ? 'All' : k)} <small>{counts[k]}</small>
            </button>
          ))}
        </div>
        <button onClick={() => { servers.reload(); trends.reload(); }}>{t('Refresh')}</button>
      </div>
      <ErrorBox error={servers.error} />
      <Loading when={!servers.data && servers.loading} />
      {servers.data ? <Table testid="fleet" rowHeight={38} gen={servers.gen} cols={cols} rows={rows} rowKey={(s) => s.name} initial={{ key: 'name', desc: false }} rowClass={(s) => 'st-' + s.st} /> : null}
    </section>
  );
}
