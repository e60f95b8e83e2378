import { useState } from 'preact/hooks';
import { api, q } from '../api.js';
import { num, secs } from '../fmt.js';
import { t } from '../i18n.js';
import { enc, setQuery } from '../router.js';
import { Dialog, ErrorBox, Loading, Table, notify, useData } from '../ui.jsx';
import { ServerHeader, canSignal } from './common.jsx';

const FILTERS = ['database', 'user', 'application', 'state', 'backend_type', 'min_duration_secs'];

function SignalDialog({ server, session, signal, onClose, onDone }) {
  const [busy, setBusy] = useState(false);
  const go = async () => {
    setBusy(true);
    try {
      const r = await api(`/servers/${enc(server)}/activity/${session.pid}/${signal}`, { method: 'POST', body: { backend_start: session.backend_start } });
      notify(r.message, r.outcome === 'signalled' ? 'ok' : 'error');
      onDone();
    } catch (e) {
      notify(e, 'error');
    } finally {
      setBusy(false);
      onClose();
    }
  };
  const title = signal === 'cancel' ? t('Cancel query') : t('Terminate session');
  return (
    <Dialog title={title} onClose={onClose}>
      <p>
        {title}: pid <b>{session.pid}</b>, {session.user || '?'}@{session.database || '?'} ({session.application || '—'})
      </p>
      <pre class="query">{session.query || ''}</pre>
      <p>{t('Are you sure?')}</p>
      <div class="actions">
        <button onClick={onClose}>{t('Close')}</button>
        <button class={'primary' + (signal === 'terminate' ? ' danger' : '')} disabled={busy} onClick={go} data-testid="confirm-signal">
          {t('Confirm')}
        </button>
      </div>
    </Dialog>
  );
}

function LockTree({ locks }) {
  if (!locks) return null;
  if (!locks.nodes.length) return <p class="muted">{t('No lock waits')}</p>;
  return (
    <ul class="locktree" data-testid="locktree">
      {locks.nodes.map((n) => (
        <li style={{ paddingLeft: `${n.depth * 1.5}em` }} class={n.depth === 0 ? 'root' : ''}>
          <b>{n.pid}</b> {n.user}@{n.database} <span class="muted">{n.state}</span>
          {n.waiting_for ? <span> · {n.waiting_for.mode} {n.waiting_for.locktype} {n.waiting_for.relation || n.waiting_for.transactionid || ''} · {secs(n.waiting_secs)}</span> : null}
          {n.depth === 0 ? <span class="badge warn">blocks {n.blocking_total}</span> : null}
          <div class="q">{n.query}</div>
        </li>
      ))}
    </ul>
  );
}

export function ActivityPage({ name, query, user }) {
  const [paused, setPaused] = useState(false);
  const [dialog, setDialog] = useState(null);
  const params = { hide_pgmon: query.hide_pgmon === 'false' ? 'false' : 'true', sort: query.sort || 'query', order: query.order || 'desc' };
  for (const f of FILTERS) if (query[f]) params[f] = query[f];
  const qs = q(params);
  const sessions = useData(() => api(`/servers/${enc(name)}/activity${qs}`), [name, qs], { every: paused ? 0 : 5000 });
  const locks = useData(() => api(`/servers/${enc(name)}/locks`), [name], { every: paused ? 0 : 5000 });
  const progress = useData(() => api(`/servers/${enc(name)}/progress`), [name], { every: paused ? 0 : 5000 });
  const may = canSignal(user);
  const d = sessions.data;

  const cols = [
    { key: 'pid', label: 'pid', num: true },
    { key: 'database', label: t('Database') },
    { key: 'user', label: t('User') },
    { key: 'application', label: t('Application'), render: (s) => <>{s.application || '—'}{s.pgmon ? <span class="badge">pgmon</span> : null}</> },
    { key: 'client_addr', label: t('Client') },
    { key: 'state', label: t('State'), render: (s) => <span class={'state ' + (s.state || '').replace(/ /g, '-')}>{s.state || s.backend_type}</span> },
    { key: 'wait_event', label: t('Wait'), render: (s) => (s.wait_event ? `${s.wait_event_type}: ${s.wait_event}` : '') + (s.blocked_by.length ? ` ← ${s.blocked_by.join(', ')}` : '') },
    { key: 'query_secs', label: t('Duration'), num: true, render: (s) => secs(s.query_secs) },
    { key: 'xact_secs', label: 'xact', num: true, render: (s) => secs(s.xact_secs) },
    { key: 'xmin_age', label: 'xmin age', num: true, render: (s) => num(s.xmin_age) },
    { key: 'query', label: t('Query'), cls: 'q', render: (s) => <code title={s.query}>{s.query}</code> },
  ];
  if (may) {
    cols.unshift({
      key: 'actions',
      label: '',
      nosort: true,
      render: (s) =>
        s.backend_type === 'client backend' && !s.pgmon ? (
          <span class="row-actions">
            <button data-testid={`cancel-${s.pid}`} onClick={() => setDialog({ session: s, signal: 'cancel' })}>{t('Cancel')}</button>
            <button class="danger" data-testid={`terminate-${s.pid}`} onClick={() => setDialog({ session: s, signal: 'terminate' })}>{t('Terminate')}</button>
          </span>
        ) : null,
    });
  }

  return (
    <section>
      <ServerHeader name={name} tab="/activity" />
      <form class="filters" onSubmit={(e) => e.preventDefault()}>
        {FILTERS.map((f) => (
          <label>
            {f === 'min_duration_secs' ? t('Min. duration, s') : f.replace('_', ' ')}
            <input name={f} value={query[f] || ''} size={f === 'min_duration_secs' ? 4 : 10} onChange={(e) => setQuery({ [f]: e.target.value })} />
          </label>
        ))}
        <label class="check">
          <input type="checkbox" checked={params.hide_pgmon === 'true'} onChange={(e) => setQuery({ hide_pgmon: e.target.checked ? null : 'false' })} /> {t('Hide pgmon')}
        </label>
        <button type="button" onClick={() => setPaused(!paused)} aria-pressed={paused}>{paused ? '▶' : '❚❚'}</button>
        <button type="button" onClick={() => { sessions.reload(); locks.reload(); progress.reload(); }}>{t('Refresh')}</button>
      </form>
      <ErrorBox error={sessions.error} />
      {d && !d.reachable ? <div class="error">{t('unreachable')}: {d.error}</div> : null}
      <Loading when={!d && sessions.loading} />
      {d ? (
        <>
          <h2>{t('Sessions')} <small class="muted">{d.count}</small></h2>
          <Table testid="sessions" cols={cols} rows={d.sessions} rowKey={(s) => s.pid} />
        </>
      ) : null}
      <h2>{t('Lock waits')} {locks.data ? <small class="muted">{locks.data.waiting}</small> : null}</h2>
      <LockTree locks={locks.data} />
      {progress.data && progress.data.commands.length ? (
        <>
          <h2>{t('Progress')}</h2>
          <Table
            cols={[
              { key: 'command', label: 'command' },
              { key: 'pid', label: 'pid', num: true },
              { key: 'relation', label: 'relation' },
              { key: 'phase', label: 'phase' },
              { key: 'share_done', label: '%', num: true, render: (p) => (p.share_done == null ? '—' : `${(p.share_done * 100).toFixed(1)} %`) },
              { key: 'query_secs', label: t('Duration'), num: true, render: (p) => secs(p.query_secs) },
            ]}
            rows={progress.data.commands}
          />
        </>
      ) : null}
      {dialog ? <SignalDialog server={name} {...dialog} onClose={() => setDialog(null)} onDone={() => sessions.reload()} /> : null}
    </section>
  );
}
