import { useState } from 'preact/hooks';
import { api } from '../../api.js';
import { t } from '../../i18n.js';
import { Link, enc } from '../../router.js';
import { Dialog, ErrorBox, Field, Table, notify, useData } from '../../ui.jsx';
import { StatusBadge } from '../fleet.jsx';

const EMPTY = { name: '', host: '', port: 5432, user: 'postgres', password: '', dbname: 'postgres', sslmode: 'prefer', description: '', enabled: true, ssh_auth_type: 'password', ssh_user: 'postgres', ssh_port: 22, ssh_password: '', ssh_key_id: '', ssh_host: '', ssh_data_path: '/' };

function ServerForm({ server, keys, onClose, onSaved }) {
  const [f, set] = useState(server ? { ...EMPTY, ...server, password: '', ssh_password: '', ssh_key_id: server.ssh_key_id || '', ssh_host: server.ssh_host || '' } : EMPTY);
  const [err, setErr] = useState(null);
  const [busy, setBusy] = useState(false);
  const upd = (k) => (e) => set({ ...f, [k]: e.target.type === 'checkbox' ? e.target.checked : e.target.value });
  const save = async (e) => {
    e.preventDefault();
    setBusy(true);
    const body = {
      name: f.name, host: f.host, port: Number(f.port), user: f.user, dbname: f.dbname, sslmode: f.sslmode, description: f.description, enabled: f.enabled,
      ssh_auth_type: f.ssh_auth_type, ssh_user: f.ssh_user, ssh_port: Number(f.ssh_port), ssh_data_path: f.ssh_data_path || '/', ssh_host: f.ssh_host || null,
    };
    if (f.password) body.password = f.password;
    if (f.ssh_auth_type === 'key') body.ssh_key_id = f.ssh_key_id || null;
    else if (f.ssh_password) body.ssh_password = f.ssh_password;
    try {
      const saved = server
        ? await api(`/servers/${enc(server.name)}`, { method: 'PUT', body })
        : await api('/servers', { method: 'POST', body });
      // A moved target forgets stored credentials: the answer's note says which.
      notify(saved && saved.note ? saved.note : t('Saved'), saved && saved.note ? 'warn' : 'ok');
      onSaved();
      onClose();
    } catch (x) {
      setErr(x);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Dialog title={server ? `${t('Edit')} ${server.name}` : t('Add server')} onClose={onClose}>
      <form onSubmit={save} class="form two">
        <Field label={t('Name')}><input name="name" required value={f.name} onInput={upd('name')} /></Field>
        <Field label={t('Host')}><input name="host" required value={f.host} onInput={upd('host')} /></Field>
        <Field label={t('Port')}><input name="port" type="number" min="1" max="65535" value={f.port} onInput={upd('port')} /></Field>
        <Field label={t('User')}><input name="user" required value={f.user} onInput={upd('user')} /></Field>
        <Field label={t('Password') + (server && server.has_password ? ' (••••)' : '')}><input name="password" type="password" autocomplete="new-password" value={f.password} onInput={upd('password')} /></Field>
        <Field label="dbname"><input name="dbname" value={f.dbname} onInput={upd('dbname')} /></Field>
        <Field label="sslmode">
          <select name="sslmode" value={f.sslmode} onChange={upd('sslmode')}>
            {['disable', 'prefer', 'require', 'verify-ca', 'verify-full'].map((m) => <option value={m}>{m}</option>)}
          </select>
        </Field>
        <Field label={t('Description')}><input name="description" value={f.description} onInput={upd('description')} /></Field>
        <label class="check"><input type="checkbox" name="enabled" checked={f.enabled} onChange={upd('enabled')} /> {t('Enabled')}</label>
        <fieldset>
          <legend>SSH</legend>
          <Field label="auth">
            <select name="ssh_auth_type" value={f.ssh_auth_type} onChange={upd('ssh_auth_type')}>
              <option value="password">password</option>
              <option value="key">key</option>
            </select>
          </Field>
          <Field label={t('SSH user')}><input name="ssh_user" value={f.ssh_user} onInput={upd('ssh_user')} /></Field>
          <Field label={t('SSH port')}><input name="ssh_port" type="number" value={f.ssh_port} onInput={upd('ssh_port')} /></Field>
          <Field label="SSH host"><input name="ssh_host" placeholder={f.host} value={f.ssh_host} onInput={upd('ssh_host')} /></Field>
          {f.ssh_auth_type === 'key' ? (
            <Field label={t('SSH key')}>
              <select name="ssh_key_id" value={f.ssh_key_id} onChange={upd('ssh_key_id')}>
                <option value="">{t('none')}</option>
                {(keys || []).map((k) => <option value={k.id}>{k.name}</option>)}
              </select>
            </Field>
          ) : (
            <Field label={'SSH ' + t('Password').toLowerCase()}><input name="ssh_password" type="password" autocomplete="new-password" value={f.ssh_password} onInput={upd('ssh_password')} /></Field>
          )}
          <Field label="data path"><input name="ssh_data_path" value={f.ssh_data_path} onInput={upd('ssh_data_path')} /></Field>
        </fieldset>
        <ErrorBox error={err} />
        <div class="actions"><button type="button" onClick={onClose}>{t('Close')}</button><button class="primary" type="submit" disabled={busy}>{t('Save')}</button></div>
      </form>
    </Dialog>
  );
}

export function ServersAdmin() {
  const servers = useData(() => api('/servers'), []);
  const keys = useData(() => api('/ssh-keys'), []);
  const [edit, setEdit] = useState(null);
  const act = async (s, what) => {
    try {
      if (what === 'delete') {
        if (!confirm(`${t('Delete')} ${s.name}? ${t('Are you sure?')}`)) return;
        await api(`/servers/${enc(s.name)}`, { method: 'DELETE' });
        servers.reload();
        return;
      }
      if (what === 'hostkey') {
        await api(`/servers/${enc(s.name)}/ssh-host-key`, { method: 'DELETE' });
        notify(t('Saved'));
        servers.reload();
        return;
      }
      const r = await api(`/servers/${enc(s.name)}/${what}`, { method: 'POST' });
      const ok = r.success !== undefined ? r.success : r.reachable !== undefined ? r.reachable : r.ok;
      notify(`${s.name}: ${r.message || r.error || (ok ? 'OK' : 'failed')}`, ok ? 'ok' : 'error');
    } catch (x) {
      notify(x, 'error');
    }
  };
  return (
    <section>
      <div class="toolbar"><h1>{t('Servers')}</h1><button class="primary" onClick={() => setEdit({})}>{t('Add server')}</button></div>
      <ErrorBox error={servers.error} />
      {servers.data ? (
        <Table
          testid="servers-admin"
          rows={servers.data}
          rowKey={(s) => s.name}
          cols={[
            { key: 'name', label: t('Name'), render: (s) => <Link href={`/servers/${enc(s.name)}`}>{s.name}</Link> },
            { key: 'st', label: t('Status'), render: (s) => <StatusBadge server={s} />, sort: (s) => s.status },
            { key: 'host', label: t('Host'), render: (s) => `${s.host}:${s.port}` },
            { key: 'user', label: t('User') },
            { key: 'ssh', label: 'SSH', render: (s) => (s.ssh_enabled ? `${s.ssh_user}@${s.ssh_host || s.host}:${s.ssh_port} (${s.ssh_auth_type})` : '—') },
            { key: 'ssh_host_key_fingerprint', label: t('Fingerprint'), render: (s) => <code class="small">{s.ssh_host_key_fingerprint || '—'}</code> },
            { key: 'a', label: '', nosort: true, render: (s) => (
              <span class="row-actions">
                <button onClick={() => setEdit(s)}>{t('Edit')}</button>
                <button onClick={() => act(s, 'test-connection')}>{t('Test connection')}</button>
                {s.ssh_enabled ? <button onClick={() => act(s, 'test-ssh')}>{t('Test SSH')}</button> : null}
                {s.ssh_host_key_fingerprint ? <button onClick={() => act(s, 'hostkey')}>{t('Reset host key')}</button> : null}
                <button class="danger" onClick={() => act(s, 'delete')}>{t('Delete')}</button>
              </span>
            ) },
          ]}
        />
      ) : null}
      {edit ? <ServerForm server={edit.name ? edit : null} keys={keys.data} onClose={() => setEdit(null)} onSaved={servers.reload} /> : null}
    </section>
  );
}
