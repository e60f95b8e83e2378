import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import './style.css';
import { currentUser, logout, onAuthChange, refresh } from './api.js';
import { getLang, setLang, t, useLang } from './i18n.js';
import { Link, match, navigate, useLocation } from './router.js';
import { Toasts } from './ui.jsx';
import { Login } from './pages/login.jsx';
import { Fleet } from './pages/fleet.jsx';
import { ServerPage } from './pages/server.jsx';
import { DatabasePage } from './pages/database.jsx';
import { ActivityPage } from './pages/activity.jsx';
import { StatementsPage } from './pages/statements.jsx';
import { ReplicationPage } from './pages/replication.jsx';
import { WraparoundPage } from './pages/wraparound.jsx';
import { UsersPage } from './pages/admin/users.jsx';
import { ServersAdmin } from './pages/admin/servers.jsx';
import { SshKeysPage } from './pages/admin/sshkeys.jsx';
import { AuditPage } from './pages/admin/audit.jsx';
import { SettingsPage } from './pages/admin/settings.jsx';
import { LogsPage } from './pages/admin/logs.jsx';

const ROUTES = [
  ['/', Fleet],
  ['/servers/:name', ServerPage],
  ['/servers/:name/db/:db', DatabasePage],
  ['/servers/:name/activity', ActivityPage],
  ['/servers/:name/statements', StatementsPage],
  ['/servers/:name/replication', ReplicationPage],
  ['/servers/:name/wraparound', WraparoundPage],
  ['/admin/users', UsersPage, 'admin'],
  ['/admin/servers', ServersAdmin, 'admin'],
  ['/admin/ssh-keys', SshKeysPage, 'admin'],
  ['/admin/audit', AuditPage, 'admin'],
  ['/admin/settings', SettingsPage, 'admin'],
  ['/admin/logs', LogsPage, 'admin'],
];

const ADMIN = [
  ['/admin/users', 'Users'],
  ['/admin/servers', 'Servers'],
  ['/admin/ssh-keys', 'SSH keys'],
  ['/admin/audit', 'Audit'],
  ['/admin/settings', 'Settings'],
  ['/admin/logs', 'System log'],
];

function useAuth() {
  const [state, set] = useState({ ready: false, user: currentUser() });
  useEffect(() => {
    const off = onAuthChange((token, me) => set({ ready: true, user: token ? me : null }));
    refresh().then(() => set({ ready: true, user: currentUser() }));
    return off;
  }, []);
  return state;
}

function Header({ user, path }) {
  const lang = useLang();
  return (
    <header class="top">
      <Link href="/" class="brand">
        <img src="/assets/icon.svg" alt="" width="22" height="22" /> pgmon
      </Link>
      <nav aria-label="main">
        <Link href="/" class={path === '/' ? 'on' : ''}>{t('Fleet')}</Link>
        {user && user.role === 'admin'
          ? ADMIN.map(([href, label]) => (
              <Link href={href} class={path.startsWith(href) ? 'on' : ''}>{t(label)}</Link>
            ))
          : null}
      </nav>
      <div class="who">
        <select aria-label={t('Language')} value={lang} onChange={(e) => setLang(e.target.value)}>
          <option value="en">EN</option>
          <option value="ru">RU</option>
        </select>
        {user ? (
          <>
            <span class="user" title={user.role}>
              {user.login} <small class="muted">({user.role})</small>
            </span>
            <button onClick={() => logout()}>{t('Log out')}</button>
          </>
        ) : null}
      </div>
    </header>
  );
}

function App() {
  const { ready, user } = useAuth();
  const loc = useLocation();
  useLang();
  const path = loc.path;

  // Logged out (never logged in, refused refresh, or a logout in another tab): the login page,
  // remembering where the user was.
  useEffect(() => {
    if (!ready) return;
    if (!user && path !== '/login') {
      const next = path + location.search;
      navigate('/login' + (next && next !== '/' ? '?next=' + encodeURIComponent(next) : ''), { replace: true });
    } else if (user && path === '/login') {
      const next = loc.query.next;
      navigate(next && next.startsWith('/') && !next.startsWith('//') ? next : '/', { replace: true });
    }
  }, [ready, user, path]);

  if (!ready) return <div class="loading">{t('Loading…')}</div>;
  if (!user || path === '/login') {
    return (
      <>
        <Login expired={loc.query.next !== undefined} />
        <Toasts />
      </>
    );
  }
  let page = null;
  for (const [pattern, Comp, role] of ROUTES) {
    const params = match(pattern, path);
    if (params) {
      page = role && user.role !== role ? <NotFound /> : <Comp {...params} query={loc.query} user={user} key={pattern + JSON.stringify(params)} />;
      break;
    }
  }
  return (
    <>
      <Header user={user} path={path} />
      <main id="main">{page || <NotFound />}</main>
      <Toasts />
    </>
  );
}

function NotFound() {
  return (
    <section>
      <h1>{t('Page not found')}</h1>
      <Link href="/">{t('Back to fleet')}</Link>
    </section>
  );
}

document.documentElement.lang = getLang();
render(<App />, document.getElementById('app'));
