import { useState } from 'preact/hooks';
import { api } from '../../api.js';
import { when } from '../../fmt.js';
import { t } from '../../i18n.js';
import { enc } from '../../router.js';
import { Dialog, ErrorBox, Field, Table, notify, useData } from '../../ui.jsx';

function UserForm({ user, onClose, onSaved }) {
  const [f, set] = useState({ login: user ? user.login : '', password: '', role: user ? user.role : 'viewer', email: (user && user.email) || '', is_active: user ? user.is_active : true });
  const [err, setErr] = useState(null);
  const save = async (e) => {
    e.preventDefault();
    try {
      if (user) {
        const body = { role: f.role, email: f.email || null, is_active: f.is_active };
        if (f.password) body.password = f.password;
        await api(`/users/${enc(user.login)}`, { method: 'PUT', body });
      } else {
        await api('/users', { method: 'POST', body: { login: f.login, password: f.password, role: f.role, email: f.email || null } });
      }
      notify(t('Saved'));
      onSaved();
      onClose();
    } catch (x) {
      setErr(x);
    }
  };
  return (
    <Dialog title={user ? `${t('Edit')} ${user.login}` : t('Add user')} onClose={onClose}>
      <form onSubmit={save} class="form">
        {user ? null : <Field label={t('Login')}><input name="login" required value={f.login} onInput={(e) => set({ ...f, login: e.target.value })} /></Field>}
        <Field label={t('Password')}><input name="password" type="password" autocomplete="new-password" required={!user} value={f.password} onInput={(e) => set({ ...f, password: e.target.value })} /></Field>
        <Field label={t('Role')}>
          <select name="role" value={f.role} onChange={(e) => set({ ...f, role: e.target.value })}>
            <option value="viewer">viewer</option>
            <option value="operator">operator</option>
            <option value="admin">admin</option>
          </select>
        </Field>
        <Field label={t('Email')}><input name="email" type="email" value={f.email} onInput={(e) => set({ ...f, email: e.target.value })} /></Field>
        {user ? <label class="check"><input type="checkbox" checked={f.is_active} onChange={(e) => set({ ...f, is_active: e.target.checked })} /> {t('Active')}</label> : null}
        <ErrorBox error={err} />
        <div class="actions"><button type="button" onClick={onClose}>{t('Close')}</button><button class="primary" type="submit">{t('Save')}</button></div>
      </form>
    </Dialog>
  );
}

export function UsersPage({ user: me }) {
  const users = useData(() => api('/users'), []);
  const [edit, setEdit] = useState(null);
  const del = async (u) => {
    if (!confirm(`${t('Delete')} ${u.login}? ${t('Are you sure?')}`)) return;
    try {
      await api(`/users/${enc(u.login)}`, { method: 'DELETE' });
      users.reload();
    } catch (x) {
      notify(x, 'error');
    }
  };
  return (
    <section>
      <div class="toolbar"><h1>{t('Users')}</h1><button class="primary" onClick={() => setEdit({})}>{t('Add user')}</button></div>
      <ErrorBox error={users.error} />
      {users.data ? (
        <Table
          testid="users"
          rows={users.data}
          rowKey={(u) => u.login}
          cols={[
            { key: 'login', label: t('Login') },
            { key: 'role', label: t('Role') },
            { key: 'email', label: t('Email') },
            { key: 'is_active', label: t('Active'), render: (u) => (u.is_active ? '✓' : '✗') },
            { key: 'created_at', label: t('Created'), render: (u) => when(u.created_at) },
            { key: 'last_login', label: t('Last login'), render: (u) => when(u.last_login) },
            { key: 'a', label: '', nosort: true, render: (u) => (
              <span class="row-actions">
                <button onClick={() => setEdit(u)}>{t('Edit')}</button>
                {u.login !== me.login ? <button class="danger" onClick={() => del(u)}>{t('Delete')}</button> : null}
              </span>
            ) },
          ]}
        />
      ) : null}
      {edit ? <UserForm user={edit.login ? edit : null} onClose={() => setEdit(null)} onSaved={users.reload} /> : null}
    </section>
  );
}
