// Times pgmon's pages in Chromium at fleet size (run by tests/src/bin/bench_web.rs, which generates
// the store): the fleet with 1,000 servers, its refresh, and a server page over a year. Each is run
// five times; the median and the slowest are printed.
import { chromium } from 'playwright-core';

const BASE = process.env.PGMON_URL;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const ctx = await browser.newContext({ viewport: { width: 1440, height: 900 } });
const page = await ctx.newPage();
await page.goto(BASE + '/login');
await page.fill('input[name=username]', 'bench');
await page.fill('input[name=password]', 'bench-password-1');
await page.click('button[type=submit]');
await page.waitForURL((u) => !u.pathname.startsWith('/login'));

const runs = 5;
const report = (label, ms) => {
  ms.sort((a, b) => a - b);
  console.log(`${label.padEnd(58)} median ${ms[Math.floor(ms.length / 2)].toFixed(0).padStart(5)} ms   slowest ${ms[ms.length - 1].toFixed(0).padStart(5)} ms`);
};

// Fleet, first render: navigation start until 1,000 rows (and the sparklines' answer) are drawn.
const first = [];
const refresh = [];
for (let i = 0; i < runs; i++) {
  await page.goto(BASE + '/');
  // Every server's answer in (the table knows 1,000 rows) and the rows in view drawn with sparklines.
  await page.waitForFunction(() => Number(document.querySelector('table[data-testid="fleet"]')?.dataset.rows) >= 1000 && document.querySelectorAll('svg.spark').length >= 20, null, { timeout: 60000 });
  first.push(await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r(performance.now())))));
  // Refresh: the button asks /servers and /fleet/trends again; timed until the new rows are drawn.
  const gen = Number(await page.getAttribute('table[data-testid="fleet"]', 'data-gen'));
  const ms = await page.evaluate(async (g) => {
    const t0 = performance.now();
    [...document.querySelectorAll('button')].find((b) => b.textContent === 'Refresh').click();
    await new Promise((resolve) => {
      const check = () => (Number(document.querySelector('table[data-testid="fleet"]').dataset.gen) > g ? resolve() : requestAnimationFrame(check));
      check();
    });
    await new Promise((r) => requestAnimationFrame(r));
    return performance.now() - t0;
  }, gen);
  refresh.push(ms);
}
report('fleet, 1,000 servers: navigation to drawn', first);
{
  // Scrolling to the end draws the last servers.
  const t0 = Date.now();
  await page.evaluate(() => window.scrollTo(0, document.body.scrollHeight));
  await page.locator('table[data-testid="fleet"] tbody tr', { hasText: 'pg-1000' }).waitFor();
  console.log(`    scrolled to the last server: drawn within ${Date.now() - t0} ms`);
}
{
  // Where the first render's time goes (the last run): each request's start and end, and the main
  // thread's long tasks.
  await page.addInitScript(() => {
    window.__lt = [];
    new PerformanceObserver((l) => window.__lt.push(...l.getEntries().map((e) => [e.startTime, e.duration]))).observe({ type: 'longtask', buffered: true });
  });
  await page.goto(BASE + '/');
  await page.waitForFunction(() => Number(document.querySelector('table[data-testid="fleet"]')?.dataset.rows) >= 1000 && document.querySelectorAll('svg.spark').length >= 20, null, { timeout: 60000 });
  const entries = await page.evaluate(() => performance.getEntriesByType('resource').filter((e) => /\/(api|assets)\//.test(e.name)).map((e) => [new URL(e.name).pathname, e.startTime, e.responseEnd, e.encodedBodySize]));
  for (const [name, start, end, size] of entries) console.log(`    ${name.padEnd(40)} ${start.toFixed(0).padStart(5)} → ${end.toFixed(0).padStart(5)} ms  ${(size / 1024).toFixed(0)} KiB`);
  for (const [start, dur] of await page.evaluate(() => window.__lt)) console.log(`    long task at ${start.toFixed(0)} ms: ${dur.toFixed(0)} ms`);
}
report('fleet, 1,000 servers: refresh (fetch + draw)', refresh);

const titles = ['Transactions', 'Cache hit ratio', 'Database sizes', 'Disk', 'Availability'];
const year = [];
let points = 0;
for (let i = 0; i < runs; i++) {
  await page.goto(BASE + '/servers/year?range=1y');
  await page.waitForFunction((ts) => ts.every((t) => {
    const f = document.querySelector(`figure.chart[data-title="${t}"]`);
    return f && Number(f.dataset.points) > 0 && f.querySelector('canvas');
  }), titles, { timeout: 60000 });
  year.push(await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r(performance.now())))));
  points = await page.evaluate(() => [...document.querySelectorAll('figure.chart')].reduce((a, f) => a + Number(f.dataset.points), 0));
}
report(`server page, 1 year (${points} points drawn): navigation to drawn`, year);
await browser.close();
