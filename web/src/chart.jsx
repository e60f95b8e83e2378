// Time-series charts on uPlot: canvas drawing, tens of thousands of points in milliseconds.
// Times are shown in the viewer's time zone (uPlot's default), a null is a gap (never bridged),
// hovering shows each value with its unit, and a drag across the plot asks for that range
// (`onZoom(fromSecs, toSecs)`), which the page puts in its URL.
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { useEffect, useRef } from 'preact/hooks';
import { t } from './i18n.js';

export const PALETTE = ['#2f7ed8', '#e4572e', '#29a36a', '#f0a202', '#8e5ea2', '#17becf', '#d62728', '#7f7f7f', '#bcbd22', '#ff7f0e'];

function cssVar(name, fallback) {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

/** Non-null values across all series: what a test (or a reader) can count as drawn points. */
function countPoints(series) {
  let n = 0;
  for (const s of series) for (const v of s.values) if (v !== null && v !== undefined) n++;
  return n;
}

export function Chart({ title, x, series, format = (v) => String(v), height = 220, onZoom, stacked = false, yMin, win }) {
  const box = useRef(null);
  const plot = useRef(null);
  const points = countPoints(series);

  useEffect(() => {
    if (!box.current || points === 0) return;
    const fg = cssVar('--fg-muted', '#666');
    const grid = cssVar('--grid', 'rgba(128,128,128,0.15)');
    const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    let data = series.map((s) => s.values);
    if (stacked) {
      const acc = new Array(x.length).fill(0);
      data = data.map((vals) => vals.map((v, i) => (v === null || v === undefined ? null : (acc[i] += v))));
    }
    const opts = {
      width: box.current.clientWidth || 600,
      height,
      cursor: { drag: { x: true, y: false, setScale: false } },
      select: { show: true },
      legend: { live: true },
      scales: {
        // The whole window asked for, so that missing data shows as missing, not as a shorter axis.
        x: { time: true, ...(win ? { range: () => [win.from.getTime() / 1000, win.to.getTime() / 1000] } : {}) },
        y: { range: (u, min, max) => [yMin !== undefined ? Math.min(yMin, min ?? 0) : min ?? 0, max === min ? (max || 1) * 1.1 : max] },
      },
      axes: [
        // Time ticks at least 90 px apart: uPlot's two-line labels collide below that.
        { ...axis, space: 90 },
        { ...axis, size: 70, values: (u, vals) => vals.map((v) => format(v)) },
      ],
      series: [
        { label: t('Time'), value: (u, v) => (v == null ? '—' : new Date(v * 1000).toLocaleString()) },
        ...series.map((s, i) => ({
          label: s.label,
          stroke: s.color || PALETTE[i % PALETTE.length],
          width: 1.5,
          fill: stacked ? (s.color || PALETTE[i % PALETTE.length]) + '55' : undefined,
          spanGaps: false,
          points: { show: x.length < 60 },
          value: (u, v) => (v == null ? '—' : format(v)),
        })),
      ],
      hooks: {
        setSelect: [
          (u) => {
            if (u.select.width > 4 && onZoom) {
              const from = u.posToVal(u.select.left, 'x');
              const to = u.posToVal(u.select.left + u.select.width, 'x');
              onZoom(Math.floor(from), Math.ceil(to));
            }
            u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
          },
        ],
      },
    };
    const u = new uPlot(opts, [x, ...data], box.current);
    plot.current = u;
    const ro = new ResizeObserver(() => {
      const w = box.current && box.current.clientWidth;
      if (w && Math.abs(w - u.width) > 2) u.setSize({ width: w, height });
    });
    ro.observe(box.current);
    return () => {
      ro.disconnect();
      u.destroy();
    };
  }, [x, series, height, stacked, win, points === 0]);

  return (
    <figure class="chart" data-points={points} data-title={title}>
      <figcaption>{title}</figcaption>
      {points === 0 ? <div class="empty" style={{ height: `${height}px` }}>{t('No data in this range')}</div> : <div ref={box} class="plot" />}
    </figure>
  );
}

/** A small line without axes for tables (the fleet's TPS): a few dozen points, drawn as SVG. */
export function Sparkline({ values, width = 120, height = 28 }) {
  const vals = values.filter((v) => v !== null && v !== undefined);
  if (vals.length < 2) return <span class="muted">—</span>;
  const max = Math.max(...vals) || 1;
  const step = width / (values.length - 1);
  let d = '';
  let pen = false;
  values.forEach((v, i) => {
    if (v === null || v === undefined) {
      pen = false;
      return;
    }
    const y = height - 2 - (v / max) * (height - 4);
    d += `${pen ? 'L' : 'M'}${(i * step).toFixed(1)},${y.toFixed(1)}`;
    pen = true;
  });
  return (
    <svg class="spark" width={width} height={height} viewBox={`0 0 ${width} ${height}`} role="img" aria-label={`max ${max.toFixed(1)}/s`}>
      <path d={d} fill="none" stroke="currentColor" stroke-width="1.5" />
    </svg>
  );
}
