import { useState } from 'preact/hooks';
import { login } from '../api.js';
import { t } from '../i18n.js';

export function Login({ expired }) {
  const [user, setUser] = useState('');
  const [pass, setPass] = useState('');
  const [err, setErr] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setErr(null);
    try {
      await login(user, pass);
    } catch (x) {
      setErr(x.status === 401 ? t('Wrong login or password') : x.message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="login">
      <form onSubmit={submit} aria-label={t('Log in')}>
        <h1>
          <img src="/assets/icon.svg" alt="" width="28" height="28" /> pgmon
        </h1>
        {expired && !err ? <p class="muted">{t('Session expired, log in again')}</p> : null}
        <label class="field">
          <span>{t('Login')}</span>
          <input name="username" autocomplete="username" required autofocus value={user} onInput={(e) => setUser(e.target.value)} />
        </label>
        <label class="field">
          <span>{t('Password')}</span>
          <input name="password" type="password" autocomplete="current-password" required value={pass} onInput={(e) => setPass(e.target.value)} />
        </label>
        {err ? <div class="error" role="alert">{err}</div> : null}
        <button class="primary" type="submit" disabled={busy}>{t('Log in')}</button>
      </form>
    </main>
  );
}
