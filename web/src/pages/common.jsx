import { api } from '../api.js';
import { t } from '../i18n.js';
import { Link, enc } from '../router.js';
import { useData } from '../ui.jsx';
import { StatusBadge } from './fleet.jsx';
import { num } from '../fmt.js';

const TABS = [
  ['', 'Server'],
  ['/activity', 'Activity'],
  ['/statements', 'Statements'],
  ['/replication', 'Replication'],
  ['/wraparound', 'Wraparound'],
];

/** The server's name, live status and its pages as tabs. */
export function ServerHeader({ name, tab, extra }) {
  const s = useData(() => api(`/servers/${enc(name)}`), [name], { every: 30000 });
  const srv = s.data;
  return (
    <div class="server-head">
      <div class="title">
        <Link href="/" class="muted">{t('Servers')}</Link> / <h1>{name}</h1>
        {srv ? <StatusBadge server={srv} /> : null}
        {srv ? (
          <span class="muted facts">
            {srv.version ? `PostgreSQL ${srv.version.split(' ')[0]}` : ''}
            {srv.in_recovery ? ` · ${t('Standby')}` : ''}
            {srv.uptime_hours != null ? ` · ${t('Uptime')} ${num(srv.uptime_hours, 1)} h` : ''}
            {` · ${srv.host}:${srv.port}`}
          </span>
        ) : null}
        {extra}
      </div>
      <nav class="tabs" aria-label={name}>
        {TABS.map(([suffix, label]) => (
          <Link href={`/servers/${enc(name)}${suffix}`} class={tab === suffix ? 'on' : ''} aria-current={tab === suffix ? 'page' : undefined}>
            {t(label)}
          </Link>
        ))}
      </nav>
    </div>
  );
}

/** `?from=..&to=..` for the API from a window. */
export function rangeQs(win) {
  return `from=${encodeURIComponent(win.from.toISOString())}&to=${encodeURIComponent(win.to.toISOString())}`;
}

export function canSignal(user) {
  return user && (user.role === 'admin' || user.role === 'operator');
}
