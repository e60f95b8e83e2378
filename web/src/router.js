// A router over the History API: every page has its own URL (query included), so a view can be
// shared or bookmarked; links are real <a href> (open in a new tab works).
import { h } from 'preact';
import { useEffect, useState } from 'preact/hooks';

const subs = new Set();

export function navigate(url, { replace = false } = {}) {
  if (url === location.pathname + location.search) return;
  history[replace ? 'replaceState' : 'pushState'](null, '', url);
  for (const f of subs) f(url);
}

addEventListener('popstate', () => {
  for (const f of subs) f(location.pathname + location.search);
});

export function useLocation() {
  const [, set] = useState(0);
  useEffect(() => {
    const f = () => set((n) => n + 1);
    subs.add(f);
    return () => subs.delete(f);
  }, []);
  return { path: location.pathname, query: Object.fromEntries(new URLSearchParams(location.search)) };
}

/** Changes some query parameters of the current page (replaces the history entry). */
export function setQuery(changes, { replace = true } = {}) {
  const s = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(changes)) {
    if (v === undefined || v === null || v === '') s.delete(k);
    else s.set(k, v);
  }
  const qs = s.toString();
  navigate(location.pathname + (qs ? '?' + qs : ''), { replace });
}

/** `match('/servers/:name', '/servers/db1')` → `{ name: 'db1' }`, or null. */
export function match(pattern, path) {
  const norm = (x) => x.replace(/\/+$/, '') || '/';
  const p = norm(pattern).split('/');
  const a = norm(path).split('/');
  if (p.length !== a.length) return null;
  const out = {};
  for (let i = 0; i < p.length; i++) {
    if (p[i].startsWith(':')) {
      if (!a[i]) return null;
      out[p[i].slice(1)] = decodeURIComponent(a[i]);
    } else if (p[i] !== a[i]) return null;
  }
  return out;
}

export function Link({ href, children, ...rest }) {
  const onClick = (e) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(href);
    window.scrollTo(0, 0);
  };
  return h('a', { href, onClick, ...rest }, children);
}

export const enc = encodeURIComponent;
