import { useState } from 'preact/hooks';
import { api } from '../../api.js';
import { when } from '../../fmt.js';
import { t } from '../../i18n.js';
import { Dialog, ErrorBox, Field, Table, notify, useData } from '../../ui.jsx';

function KeyForm({ mode, onClose, onSaved }) {
  const [f, set] = useState({ name: '', key_type: 'ed25519', passphrase: '', description: '', private_key: '' });
  const [err, setErr] = useState(null);
  const upd = (k) => (e) => set({ ...f, [k]: e.target.value });
  const save = async (e) => {
    e.preventDefault();
    const body = { name: f.name, description: f.description || null, passphrase: f.passphrase || null };
    try {
      if (mode === 'generate') await api('/ssh-keys/generate', { method: 'POST', body: { ...body, key_type: f.key_type } });
      else await api('/ssh-keys/import', { method: 'POST', body: { ...body, private_key: f.private_key } });
      notify(t('Saved'));
      onSaved();
      onClose();
    } catch (x) {
      setErr(x);
    }
  };
  return (
    <Dialog title={mode === 'generate' ? t('Generate') : t('Import')} onClose={onClose}>
      <form onSubmit={save} class="form">
        <Field label={t('Name')}><input name="name" required value={f.name} onInput={upd('name')} /></Field>
        {mode === 'generate' ? (
          <Field label={t('Key type')}>
            <select name="key_type" value={f.key_type} onChange={upd('key_type')}>
              <option value="ed25519">ed25519</option>
              <option value="rsa">rsa</option>
            </select>
          </Field>
        ) : (
          <Field label={t('Private key')}><textarea name="private_key" rows="8" required value={f.private_key} onInput={upd('private_key')} /></Field>
        )}
        <Field label={t('Passphrase')}><input name="passphrase" type="password" autocomplete="new-password" value={f.passphrase} onInput={upd('passphrase')} /></Field>
        <Field label={t('Description')}><input name="description" value={f.description} onInput={upd('description')} /></Field>
        <ErrorBox error={err} />
        <div class="actions"><button type="button" onClick={onClose}>{t('Close')}</button><button class="primary" type="submit">{t('Save')}</button></div>
      </form>
    </Dialog>
  );
}

async function download(k) {
  try {
    const r = await api(`/ssh-keys/${k.id}/download-public`, { raw: true });
    if (!r.ok) throw new Error(r.statusText);
    const blob = await r.blob();
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = `${k.name}.pub`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  } catch (x) {
    notify(x, 'error');
  }
}

export function SshKeysPage() {
  const keys = useData(() => api('/ssh-keys'), []);
  const [mode, setMode] = useState(null);
  const del = async (k) => {
    if (!confirm(`${t('Delete')} ${k.name}? ${t('Are you sure?')}`)) return;
    try {
      await api(`/ssh-keys/${k.id}`, { method: 'DELETE' });
      keys.reload();
    } catch (x) {
      notify(x, 'error');
    }
  };
  return (
    <section>
      <div class="toolbar">
        <h1>{t('SSH keys')}</h1>
        <button class="primary" onClick={() => setMode('generate')}>{t('Generate')}</button>
        <button onClick={() => setMode('import')}>{t('Import')}</button>
      </div>
      <ErrorBox error={keys.error} />
      {keys.data ? (
        <Table
          testid="ssh-keys"
          rows={keys.data}
          rowKey={(k) => k.id}
          cols={[
            { key: 'name', label: t('Name') },
            { key: 'key_type', label: t('Type') },
            { key: 'fingerprint', label: t('Fingerprint'), render: (k) => <code class="small">{k.fingerprint}</code> },
            { key: 'servers_count', label: t('Servers'), num: true },
            { key: 'created_at', label: t('Created'), render: (k) => when(k.created_at) },
            { key: 'a', label: '', nosort: true, render: (k) => (
              <span class="row-actions">
                <button onClick={() => download(k)}>{t('Download')}</button>
                <button class="danger" onClick={() => del(k)}>{t('Delete')}</button>
              </span>
            ) },
          ]}
        />
      ) : null}
      {mode ? <KeyForm mode={mode} onClose={() => setMode(null)} onSaved={keys.reload} /> : null}
    </section>
  );
}
