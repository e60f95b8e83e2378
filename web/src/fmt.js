// Numbers and times as an operator reads them, in the viewer's locale and time zone.
import { getLang } from './i18n.js';

const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

export function bytes(n, digits = 1) {
  if (n === null || n === undefined || Number.isNaN(n)) return '—';
  const sign = n < 0 ? '-' : '';
  let v = Math.abs(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${sign}${v.toFixed(i === 0 ? 0 : digits)} ${units[i]}`;
}

export function num(n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(n)) return '—';
  return Number(n).toLocaleString(getLang(), { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

/** A rate per second, with decimals only where they matter. */
export function perSec(v) {
  return `${num(v, v < 10 ? 2 : 0)}/s`;
}

export function pct(r, digits = 1) {
  if (r === null || r === undefined) return '—';
  return `${(r * 100).toFixed(digits)} %`;
}

export function secs(s) {
  if (s === null || s === undefined) return '—';
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.round((s % 86400) / 3600)} h`;
}

export function ms(v) {
  if (v === null || v === undefined) return '—';
  return v < 1000 ? `${v.toFixed(v < 10 ? 2 : 0)} ms` : secs(v / 1000);
}

export function when(t) {
  if (!t) return '—';
  const d = t instanceof Date ? t : new Date(t);
  return d.toLocaleString(getLang(), { dateStyle: 'short', timeStyle: 'medium' });
}

export function ago(t) {
  if (!t) return '—';
  const s = (Date.now() - new Date(t).getTime()) / 1000;
  return secs(Math.max(0, s));
}
