import { useEffect, useState } from 'preact/hooks';
import { api } from '../../api.js';
import { when } from '../../fmt.js';
import { t } from '../../i18n.js';
import { ErrorBox, notify, useData } from '../../ui.jsx';

const KEYS = ['collect_interval', 'size_update_interval', 'db_check_interval', 'retention_months', 'audit_retention_days', 'logs_retention_days'];

export function SettingsPage() {
  const s = useData(() => api('/settings'), []);
  const [vals, setVals] = useState({});
  const [err, setErr] = useState(null);
  useEffect(() => {
    if (s.data) setVals(Object.fromEntries(KEYS.filter((k) => s.data[k]).map((k) => [k, s.data[k].value])));
  }, [s.data]);
  const save = async (e) => {
    e.preventDefault();
    setErr(null);
    const body = {};
    for (const k of KEYS) if (s.data[k] && String(vals[k]) !== String(s.data[k].value)) body[k] = Number(vals[k]);
    try {
      await api('/settings', { method: 'PUT', body });
      notify(t('Saved'));
      s.reload();
    } catch (x) {
      setErr(x);
    }
  };
  return (
    <section>
      <h1>{t('Settings')}</h1>
      <ErrorBox error={s.error} />
      {s.data ? (
        <form class="form settings" onSubmit={save}>
          {KEYS.filter((k) => s.data[k]).map((k) => (
            <label class="field">
              <span>
                <b>{k}</b> <small class="muted">{s.data[k].description}</small>
              </span>
              <input name={k} type="number" value={vals[k] ?? ''} onInput={(e) => setVals({ ...vals, [k]: e.target.value })} />
              <small class="muted">{when(s.data[k].updated_at)} {s.data[k].updated_by || ''}</small>
            </label>
          ))}
          <ErrorBox error={err} />
          <div class="actions"><button class="primary" type="submit">{t('Save')}</button></div>
        </form>
      ) : null}
    </section>
  );
}
