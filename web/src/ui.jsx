// Pieces every page uses: data loading with polling, tables, the time range, dialogs, messages.
import { useCallback, useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { t } from './i18n.js';
import { setQuery } from './router.js';

/** Loads `load()` now, when `deps` change, and every `every` ms while the tab is visible. A reload
 *  keeps the previous data on screen until the new answer arrives. */
export function useData(load, deps, { every = 0 } = {}) {
  const [state, set] = useState({ data: null, error: null, loading: true, gen: 0 });
  const seq = useRef(0);
  const run = useCallback(async () => {
    const mine = ++seq.current;
    set((s) => ({ ...s, loading: true }));
    try {
      const data = await load();
      if (mine === seq.current) set((s) => ({ data, error: null, loading: false, gen: s.gen + 1 }));
    } catch (error) {
      if (mine === seq.current) set((s) => ({ data: s.data, error, loading: false }));
    }
  }, deps);
  useEffect(() => {
    run();
    if (!every) return () => seq.current++;
    const id = setInterval(() => {
      if (document.visibilityState === 'visible') run();
    }, every);
    return () => {
      clearInterval(id);
      seq.current++;
    };
  }, [run, every]);
  return { ...state, reload: run };
}

export function ErrorBox({ error }) {
  if (!error || error.status === 401) return null;
  return <div class="error" role="alert">{error.message || String(error)}</div>;
}

export function Loading({ when }) {
  return when ? <div class="loading" aria-live="polite">{t('Loading…')}</div> : null;
}

/** A sortable table: `cols` = [{ key, label, render?, sort? (value for sorting), num? }]. */
/** Rows drawn beyond the viewport, above and below, when a table is windowed. */
const OVERSCAN = 30;

export function Table({ cols, rows, initial, rowKey, rowClass, empty, testid, gen, rowHeight }) {
  const [sort, setSort] = useState(initial || { key: null, desc: false });
  // Windowing (`rowHeight` given, fixed layout): only the rows near the viewport are in the DOM,
  // so a thousand-server fleet costs what forty rows do; spacer rows keep the scroll height.
  const body = useRef(null);
  const [win, setWin] = useState([0, 80]);
  useEffect(() => {
    if (!rowHeight) return undefined;
    const on = () => {
      const el = body.current;
      if (!el) return;
      const top = el.getBoundingClientRect().top;
      const first = Math.max(0, Math.floor(-top / rowHeight) - OVERSCAN);
      const count = Math.ceil(window.innerHeight / rowHeight) + 2 * OVERSCAN;
      setWin((w) => (w[0] === first && w[1] === first + count ? w : [first, first + count]));
    };
    on();
    addEventListener('scroll', on, { passive: true });
    addEventListener('resize', on);
    return () => {
      removeEventListener('scroll', on);
      removeEventListener('resize', on);
    };
  }, [rowHeight]);
  let shown = rows;
  if (sort.key) {
    const col = cols.find((c) => c.key === sort.key);
    const val = col && (col.sort || ((r) => r[col.key]));
    if (val) {
      shown = [...rows].sort((a, b) => {
        const x = val(a);
        const y = val(b);
        if (x === y) return 0;
        if (x === null || x === undefined) return 1;
        if (y === null || y === undefined) return -1;
        return (x < y ? -1 : 1) * (sort.desc ? -1 : 1);
      });
    }
  }
  return (
    <div class="table-wrap">
      <table data-testid={testid} data-gen={gen} data-rows={rows.length} aria-rowcount={rows.length + 1} class={rowHeight ? 'windowed' : ''}>
        {/* Fixed layout: column widths from here, so a thousand rows are laid out in one pass. */}
        {rowHeight ? (
          <colgroup>
            {cols.map((c) => <col style={c.width ? { width: c.width } : undefined} />)}
          </colgroup>
        ) : null}
        <thead>
          <tr>
            {cols.map((c) => (
              <th class={c.num ? 'num' : ''} aria-sort={sort.key === c.key ? (sort.desc ? 'descending' : 'ascending') : undefined}>
                {c.nosort ? (
                  c.label
                ) : (
                  <button class="th" onClick={() => setSort({ key: c.key, desc: sort.key === c.key ? !sort.desc : !!c.num })}>
                    {c.label}
                    {sort.key === c.key ? (sort.desc ? ' ▼' : ' ▲') : ''}
                  </button>
                )}
              </th>
            ))}
          </tr>
        </thead>
        <tbody ref={body}>
          {rowHeight && win[0] > 0 ? <tr aria-hidden="true" style={{ height: `${Math.min(win[0], shown.length) * rowHeight}px` }} /> : null}
          {shown.length === 0 ? (
            <tr>
              <td colSpan={cols.length} class="muted">{empty || '—'}</td>
            </tr>
          ) : (
            (rowHeight ? shown.slice(win[0], win[1]) : shown).map((r, i) => (
              <tr key={rowKey ? rowKey(r) : i} class={rowClass ? rowClass(r) : ''} aria-rowindex={(rowHeight ? win[0] : 0) + i + 2} style={rowHeight ? { height: `${rowHeight}px` } : undefined}>
                {cols.map((c) => (
                  <td class={c.num ? 'num' : c.cls || ''}>{c.render ? c.render(r) : r[c.key] ?? '—'}</td>
                ))}
              </tr>
            ))
          )}
          {rowHeight && win[1] < shown.length ? <tr aria-hidden="true" style={{ height: `${(shown.length - win[1]) * rowHeight}px` }} /> : null}
        </tbody>
      </table>
    </div>
  );
}

export const PRESETS = [
  ['1h', 'Last hour', 3600],
  ['6h', '6 hours', 6 * 3600],
  ['24h', '24 hours', 86400],
  ['7d', '7 days', 7 * 86400],
  ['30d', '30 days', 30 * 86400],
  ['1y', '1 year', 365 * 86400],
];

/** The page's time window from its URL: `from`/`to` (ISO) or `range` (a preset), default 24 h. */
export function windowOf(query, fallback = '24h') {
  if (query.from && query.to) {
    const from = new Date(query.from);
    const to = new Date(query.to);
    if (!isNaN(from) && !isNaN(to) && from < to) return { from, to, preset: null };
  }
  const p = PRESETS.find((x) => x[0] === (query.range || fallback)) || PRESETS[2];
  const to = new Date();
  return { from: new Date(to.getTime() - p[2] * 1000), to, preset: p[0] };
}

/** [`windowOf`], computed once per URL: a preset's "now" must not move at every render, or every
 *  render would ask for new data. */
export function useWindow(query, fallback = '24h') {
  // A preset ("last 24 hours") moves with the clock: once a minute, so the charts follow without
  // asking for every render.
  const preset = !(query.from && query.to);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (!preset) return undefined;
    const id = setInterval(() => document.visibilityState === 'visible' && setTick((n) => n + 1), 60000);
    return () => clearInterval(id);
  }, [preset]);
  return useMemo(() => windowOf(query, fallback), [query.from, query.to, query.range, fallback, tick]);
}

function localInput(d) {
  const z = new Date(d.getTime() - d.getTimezoneOffset() * 60000);
  return z.toISOString().slice(0, 16);
}

export function RangePicker({ win }) {
  const [from, setFrom] = useState(localInput(win.from));
  const [to, setTo] = useState(localInput(win.to));
  useEffect(() => {
    setFrom(localInput(win.from));
    setTo(localInput(win.to));
  }, [win.from.getTime(), win.to.getTime()]);
  const apply = (e) => {
    e.preventDefault();
    const f = new Date(from);
    const tt = new Date(to);
    if (isNaN(f) || isNaN(tt) || f >= tt) return;
    setQuery({ from: f.toISOString(), to: tt.toISOString(), range: null }, { replace: false });
  };
  return (
    <form class="range" onSubmit={apply} aria-label={t('Time range')}>
      <div class="presets" role="group">
        {PRESETS.map(([k, label]) => (
          <button type="button" class={win.preset === k ? 'on' : ''} aria-pressed={win.preset === k} onClick={() => setQuery({ range: k, from: null, to: null }, { replace: false })}>
            {t(label)}
          </button>
        ))}
      </div>
      <label>
        {t('From')} <input type="datetime-local" value={from} onInput={(e) => setFrom(e.target.value)} />
      </label>
      <label>
        {t('To')} <input type="datetime-local" value={to} onInput={(e) => setTo(e.target.value)} />
      </label>
      <button type="submit">{t('Apply')}</button>
    </form>
  );
}

/** Zooming a chart: its range goes into the URL, as a shareable absolute window. */
export function zoomTo(fromSecs, toSecs) {
  setQuery({ from: new Date(fromSecs * 1000).toISOString(), to: new Date(toSecs * 1000).toISOString(), range: null }, { replace: false });
}

/** A modal dialog; Escape or the Close button closes it, focus starts inside. */
export function Dialog({ title, onClose, children }) {
  const ref = useRef(null);
  useEffect(() => {
    const el = ref.current;
    if (el && !el.open) el.showModal();
    const f = el && el.querySelector('input, select, textarea, button.primary');
    f && f.focus();
  }, []);
  return (
    <dialog ref={ref} onClose={onClose} onCancel={onClose} aria-label={title}>
      <header>
        <h2>{title}</h2>
        <button class="icon" aria-label={t('Close')} onClick={onClose}>×</button>
      </header>
      {children}
    </dialog>
  );
}

export function Field({ label, children }) {
  return (
    <label class="field">
      <span>{label}</span>
      {children}
    </label>
  );
}

/** Toasts: `notify('Saved')`, `notify(error, 'error')`. */
const toastSubs = new Set();
export function notify(msg, kind = 'ok') {
  const text = msg instanceof Error ? msg.message : String(msg);
  for (const f of toastSubs) f({ text, kind, id: Math.random() });
}
export function Toasts() {
  const [items, set] = useState([]);
  useEffect(() => {
    const f = (m) => {
      set((xs) => [...xs, m]);
      setTimeout(() => set((xs) => xs.filter((x) => x.id !== m.id)), 6000);
    };
    toastSubs.add(f);
    return () => toastSubs.delete(f);
  }, []);
  return (
    <div class="toasts" aria-live="polite">
      {items.map((m) => (
        <div class={'toast ' + m.kind} role={m.kind === 'error' ? 'alert' : 'status'}>{m.text}</div>
      ))}
    </div>
  );
}

/** Buckets' start times (ISO strings from the API) as uPlot's seconds. */
export function secsOf(times) {
  return times.map((s) => Math.floor(Date.parse(s) / 1000));
}
