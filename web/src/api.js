// The API client: the access token lives in memory only (never in storage a script could read
// later); the refresh token is the API's HttpOnly cookie. Tabs share one refresh: it runs under a Web
// Lock, and the tab that refreshed broadcasts the new token, so N tabs cost one /refresh, not N (the
// API would take N within its grace period, but each would rotate the cookie again).
// A refresh that fails ends the session in every tab: no retry, no loop.

const channel = typeof BroadcastChannel === 'function' ? new BroadcastChannel('pgmon-auth') : null;
let token = null;
let listeners = new Set();
let me = null;

function emit() {
  for (const f of listeners) f(token, me);
}

export function onAuthChange(f) {
  listeners.add(f);
  return () => listeners.delete(f);
}

export function currentUser() {
  return me;
}

// Whether this browser holds a session (a refresh cookie we cannot read, being HttpOnly): set at
// login, cleared at logout or when a refresh is refused. Without it no refresh is tried, so a first
// visit or an ended session costs no request.
const MARK = 'pgmon.session';
function mark(on) {
  try {
    if (on) localStorage.setItem(MARK, '1');
    else localStorage.removeItem(MARK);
  } catch {}
}
function marked() {
  try {
    return localStorage.getItem(MARK) === '1';
  } catch {
    return true;
  }
}

function setToken(t, user) {
  token = t;
  if (user !== undefined) me = user;
  if (!t) me = null;
  emit();
}

if (channel) {
  channel.onmessage = (e) => {
    const m = e.data || {};
    if (m.type === 'token' && m.token) {
      token = m.token;
      if (m.me) me = m.me;
      emit();
    } else if (m.type === 'logout') {
      setToken(null);
    }
  };
}

function withLock(f) {
  if (navigator.locks && navigator.locks.request) {
    return navigator.locks.request('pgmon-refresh', f);
  }
  return f();
}

let inflight = null;

/** A new access token from the refresh cookie, or null when the session is over. `stale` is the
 *  token that was refused: if another tab replaced it meanwhile, that one is used. */
export function refresh(stale = null) {
  if (inflight) return inflight;
  inflight = withLock(async () => {
    if (token && token !== stale) return token;
    if (!marked()) {
      if (token) setToken(null);
      return null;
    }
    let r;
    try {
      r = await fetch('/api/refresh', { method: 'POST', credentials: 'same-origin', headers: { Accept: 'application/json' } });
    } catch {
      return token; // network trouble: not a logout
    }
    if (!r.ok) {
      mark(false);
      setToken(null);
      channel && channel.postMessage({ type: 'logout' });
      return null;
    }
    const body = await r.json();
    token = body.access_token;
    await loadMe();
    channel && channel.postMessage({ type: 'token', token, me });
    emit();
    return token;
  }).finally(() => {
    inflight = null;
  });
  return inflight;
}

async function loadMe() {
  const r = await fetch('/api/users/me', { headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' } });
  me = r.ok ? await r.json() : null;
}

export async function login(username, password) {
  const form = new URLSearchParams({ username, password });
  const r = await fetch('/api/token', {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
    body: form,
  });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new ApiError(r.status, body.detail || r.statusText);
  token = body.access_token;
  mark(true);
  await loadMe();
  channel && channel.postMessage({ type: 'token', token, me });
  emit();
}

export async function logout() {
  try {
    await fetch('/api/logout', { method: 'POST', credentials: 'same-origin', headers: token ? { Authorization: `Bearer ${token}` } : {} });
  } finally {
    mark(false);
    setToken(null);
    channel && channel.postMessage({ type: 'logout' });
  }
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === 'string' ? detail : JSON.stringify(detail));
    this.status = status;
  }
}

/** `api('/servers')`: JSON from /api/..., with the token; a 401 refreshes once, then gives up. */
export async function api(path, { method = 'GET', body, raw = false, signal } = {}) {
  if (!token) await refresh();
  if (!token) throw new ApiError(401, 'not logged in');
  const call = (t) =>
    fetch('/api' + path, {
      method,
      signal,
      credentials: 'same-origin',
      headers: {
        Authorization: `Bearer ${t}`,
        Accept: 'application/json',
        ...(body !== undefined && !(body instanceof FormData) ? { 'Content-Type': 'application/json' } : {}),
      },
      body: body === undefined ? undefined : body instanceof FormData ? body : JSON.stringify(body),
    });
  const used = token;
  let r = await call(used);
  if (r.status === 401) {
    const fresh = await refresh(used);
    if (!fresh) throw new ApiError(401, 'session expired');
    r = await call(fresh);
    if (r.status === 401) {
      mark(false);
      setToken(null);
      throw new ApiError(401, 'session expired');
    }
  }
  if (raw) return r;
  const text = await r.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!r.ok) throw new ApiError(r.status, (data && data.detail) || r.statusText);
  return data;
}

export const q = (params) => {
  const s = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') s.set(k, v);
  const t = s.toString();
  return t ? '?' + t : '';
};
