import { api, q } from '../../api.js';
import { when } from '../../fmt.js';
import { t } from '../../i18n.js';
import { setQuery } from '../../router.js';
import { ErrorBox, Table, useData } from '../../ui.jsx';

const PAGE = 100;

export function AuditPage({ query }) {
  const offset = Number(query.offset || 0);
  const qs = q({ username: query.username, event_type: query.event_type, limit: PAGE, offset });
  const page = useData(() => api(`/audit/sessions${qs}`), [qs]);
  const d = page.data;
  return (
    <section>
      <div class="toolbar">
        <h1>{t('Audit')}</h1>
        <input placeholder={t('User')} aria-label={t('User')} value={query.username || ''} onChange={(e) => setQuery({ username: e.target.value, offset: null })} />
        <input placeholder={t('Event')} aria-label={t('Event')} value={query.event_type || ''} onChange={(e) => setQuery({ event_type: e.target.value, offset: null })} />
      </div>
      <ErrorBox error={page.error} />
      {d ? (
        <>
          <Table
            testid="audit"
            rows={d.items}
            rowKey={(e) => e.id}
            cols={[
              { key: 'timestamp', label: t('Time'), render: (e) => when(e.timestamp) },
              { key: 'event_type', label: t('Event') },
              { key: 'username', label: t('User') },
              { key: 'ip_address', label: 'IP' },
              { key: 'details', label: t('Details'), cls: 'q' },
            ]}
          />
          <Pager total={d.total} offset={offset} />
        </>
      ) : null}
    </section>
  );
}

export function Pager({ total, offset }) {
  return (
    <div class="pager">
      <button disabled={offset <= 0} onClick={() => setQuery({ offset: Math.max(0, offset - PAGE) || null })}>←</button>
      <span>{total ? `${offset + 1}–${Math.min(total, offset + PAGE)} ${t('of')} ${total}` : '0'}</span>
      <button disabled={offset + PAGE >= total} onClick={() => setQuery({ offset: offset + PAGE })}>→</button>
    </div>
  );
}
