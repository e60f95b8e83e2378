import { api, q } from '../../api.js';
import { when } from '../../fmt.js';
import { t } from '../../i18n.js';
import { setQuery } from '../../router.js';
import { ErrorBox, Table, useData } from '../../ui.jsx';
import { Pager } from './audit.jsx';

export function LogsPage({ query }) {
  const offset = Number(query.offset || 0);
  const qs = q({ level: query.level, source: query.source, search: query.search, limit: 100, offset });
  const page = useData(() => api(`/logs${qs}`), [qs], { every: 30000 });
  const d = page.data;
  return (
    <section>
      <div class="toolbar">
        <h1>{t('System log')}</h1>
        <select aria-label={t('Level')} value={query.level || ''} onChange={(e) => setQuery({ level: e.target.value, offset: null })}>
          <option value="">{t('Level')}: {t('All')}</option>
          {['info', 'warning', 'error'].map((l) => <option value={l}>{l}</option>)}
        </select>
        <input placeholder={t('Source')} aria-label={t('Source')} value={query.source || ''} onChange={(e) => setQuery({ source: e.target.value, offset: null })} />
        <input type="search" placeholder={t('Search')} aria-label={t('Search')} value={query.search || ''} onChange={(e) => setQuery({ search: e.target.value, offset: null })} />
      </div>
      <ErrorBox error={page.error} />
      {d ? (
        <>
          <Table
            testid="logs"
            rows={d.items}
            rowKey={(e) => e.id}
            rowClass={(e) => 'lvl-' + e.level}
            cols={[
              { key: 'timestamp', label: t('Time'), render: (e) => when(e.timestamp) },
              { key: 'level', label: t('Level') },
              { key: 'source', label: t('Source') },
              { key: 'process', label: 'process' },
              { key: 'message', label: t('Message') },
              { key: 'details', label: t('Details'), cls: 'q' },
            ]}
          />
          <Pager total={d.total} offset={offset} />
        </>
      ) : null}
    </section>
  );
}
