// Browser checks of pgmon's UI, run by tests/tests/web.rs against real binaries and servers (it
// prepares the data: a primary named `primary` with history, statements, a lock wait and a
// `pg_sleep` named e2e-sleeper; a standby to add through the form). Each check prints `ok - ...`;
// the first failure prints `not ok - ...` and exits 1. A screenshot of every page lands in
// $SCREENSHOT_DIR.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';

const BASE = process.env.PGMON_URL;
const SHOTS = process.env.SCREENSHOT_DIR || 'screenshots';
const ADMIN = ['admin', 'admin-password-1'];
const VIEWER = ['view', 'viewer-password-1'];
mkdirSync(SHOTS, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

let step = '';
let lastPage = null;
function ok(what) {
  console.log(`ok - ${what}`);
}
async function check(what, f) {
  step = what;
  await f();
  ok(what);
}
function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

/** A page that records console errors and uncaught exceptions: any is a failure, except the 401s a
 *  test expects (`allow401`). Requests to the API are counted (the expiry check reads them). */
async function newPage(ctxOpts = {}) {
  const ctx = await browser.newContext({ viewport: { width: 1440, height: 900 }, locale: 'en-US', colorScheme: 'light', ...ctxOpts });
  const page = await ctx.newPage();
  lastPage = page;
  page.errors = [];
  page.allow401 = false;
  page.apiRequests = [];
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    if (page.allow401 && /status of 401/.test(m.text())) return;
    page.errors.push(`console: ${m.text()} @ ${page.url()}`);
  });
  page.on('pageerror', (e) => page.errors.push(`exception: ${e.message} @ ${page.url()}`));
  page.on('request', (r) => {
    if (new URL(r.url()).pathname.startsWith('/api/')) page.apiRequests.push({ at: Date.now(), url: r.url() });
  });
  return page;
}

function noErrors(page) {
  assert(page.errors.length === 0, `errors in the page:\n${page.errors.slice(0, 5).join('\n')}`);
}

async function shot(page, name) {
  await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
}

/** Waits until the chart titled `title` has drawn at least one point (a canvas with data). */
async function chartDrawn(page, title) {
  const fig = page.locator(`figure.chart[data-title="${title}"]`);
  await fig.waitFor({ timeout: 20000 });
  await page.waitForFunction((t) => {
    const f = document.querySelector(`figure.chart[data-title="${t}"]`);
    return f && Number(f.dataset.points) > 0 && f.querySelector('canvas');
  }, title, { timeout: 20000 });
  return fig;
}

/** The last `minutes` as a page's query: the test's history is only minutes old. */
function recent(minutes = 5) {
  const to = new Date();
  const from = new Date(to.getTime() - minutes * 60000);
  return `from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`;
}

async function rows(page, testid) {
  return page.locator(`table[data-testid="${testid}"] tbody tr`).count();
}

async function login(page, [user, pass], { keyboard = false } = {}) {
  await page.goto(BASE + '/');
  await page.waitForURL(/\/login/);
  if (keyboard) {
    // The login form works from the keyboard alone: the login field has focus.
    await page.keyboard.type(user);
    await page.keyboard.press('Tab');
    await page.keyboard.type(pass);
    await page.keyboard.press('Enter');
  } else {
    await page.fill('input[name=username]', user);
    await page.fill('input[name=password]', pass);
    await page.click('button[type=submit]');
  }
  await page.waitForURL((u) => !u.pathname.startsWith('/login'));
}

try {
  const page = await newPage();

  await check('an anonymous visit lands on the login page, which renders', async () => {
    await page.goto(BASE + '/servers/primary');
    await page.waitForURL(/\/login\?next=/);
    await page.locator('input[name=username]').waitFor();
    await shot(page, '01-login');
    noErrors(page);
  });

  await check('logging in with the keyboard returns to the page asked for', async () => {
    await page.keyboard.type(ADMIN[0]);
    await page.keyboard.press('Tab');
    await page.keyboard.type(ADMIN[1]);
    await page.keyboard.press('Enter');
    await page.waitForURL(/\/servers\/primary$/);
  });

  await check('fleet: the server is up, with version, connections of max, a TPS sparkline and data age', async () => {
    await page.goto(BASE + '/');
    const row = page.locator('table[data-testid="fleet"] tbody tr', { hasText: 'primary' });
    await row.locator('.badge.up').waitFor({ timeout: 20000 });
    await row.locator('svg.spark').waitFor({ timeout: 20000 });
    // The API's own probe (version, sessions) may come after the collector's word: the page
    // refreshes itself until it does.
    await row.locator('.bar .txt', { hasText: / \/ \d+/ }).first().waitFor({ timeout: 30000 });
    const text = await row.innerText();
    assert(/\d+ \/ \d+/.test(text), `no "used / max" connections in: ${text}`);
    assert(/\d+\.\d+|\d+ (ms|s)/.test(text), `no figures in: ${text}`);
    await shot(page, '02-fleet');
    noErrors(page);
  });

  await check('fleet: search and the status filter narrow the list, and live in the URL', async () => {
    await page.fill('input[type=search]', 'no-such-server');
    await page.waitForFunction(() => !document.querySelector('table[data-testid="fleet"] a'));
    assert(page.url().includes('q=no-such-server'), page.url());
    await page.fill('input[type=search]', 'prim');
    await page.locator('table[data-testid="fleet"] a', { hasText: 'primary' }).waitFor();
    await page.click('.seg button:has-text("down")');
    await page.waitForFunction(() => !document.querySelector('table[data-testid="fleet"] a'));
    await page.click('.seg button:has-text("All")');
    await page.fill('input[type=search]', '');
  });

  await check('server page: every chart draws points, the databases table lists sizes', async () => {
    await page.goto(BASE + '/servers/primary?' + recent());
    for (const title of ['Transactions', 'Sessions by state', 'Cache hit ratio', 'Database sizes', 'Availability']) {
      await chartDrawn(page, title);
    }
    const db = page.locator('table[data-testid="databases"] tbody tr', { hasText: 'shop' });
    await db.waitFor({ timeout: 20000 });
    assert(/\d+(\.\d+)? (KiB|MiB|GiB)/.test(await db.innerText()), 'no size for shop');
    await shot(page, '03-server');
    noErrors(page);
  });

  await check('server page: a drag across a chart zooms, and the range goes into the URL', async () => {
    const over = page.locator('figure.chart[data-title="Transactions"] .u-over');
    const box = await over.boundingBox();
    const before = page.url();
    await page.mouse.move(box.x + box.width * 0.5, box.y + box.height / 2);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.99, box.y + box.height / 2, { steps: 8 });
    await page.mouse.up();
    await page.waitForURL((u) => u.href !== before && u.searchParams.has('from') && u.searchParams.has('to'));
    const u = new URL(page.url());
    const span = Date.parse(u.searchParams.get('to')) - Date.parse(u.searchParams.get('from'));
    assert(span > 0 && span < 5 * 60 * 1000, `zoomed span ${span} ms is not inside the 5 minutes shown`);
    await chartDrawn(page, 'Transactions');
    noErrors(page);
  });

  await check('database page: charts draw and the facts show', async () => {
    await page.goto(BASE + '/servers/primary/db/shop?' + recent());
    await chartDrawn(page, 'Transactions');
    await chartDrawn(page, 'Size');
    await page.locator('dl.facts-grid').waitFor();
    await shot(page, '04-database');
    noErrors(page);
  });

  await check('live activity: sessions, the lock-wait tree, and cancel buttons for an admin', async () => {
    await page.goto(BASE + '/servers/primary/activity');
    await page.locator('table[data-testid="sessions"] tbody tr', { hasText: 'e2e-sleeper' }).waitFor({ timeout: 20000 });
    await page.locator('ul[data-testid="locktree"] li.root').waitFor({ timeout: 20000 });
    assert((await page.locator('ul[data-testid="locktree"] li').count()) >= 2, 'the lock tree shows no waiter');
    await shot(page, '05-activity');
    noErrors(page);
  });

  await check('live activity: cancelling the pg_sleep asks for confirmation, then the server answers', async () => {
    const row = page.locator('table[data-testid="sessions"] tbody tr', { hasText: 'e2e-sleeper' });
    await row.locator('button', { hasText: 'Cancel' }).click();
    await page.locator('dialog [data-testid="confirm-signal"]').waitFor();
    await shot(page, '06-cancel-confirm');
    await page.click('dialog [data-testid="confirm-signal"]');
    await page.locator('.toast.ok').waitFor({ timeout: 10000 });
    await page.waitForFunction(
      () => ![...document.querySelectorAll('table[data-testid="sessions"] tbody tr')].some((r) => r.innerText.includes('e2e-sleeper') && r.innerText.includes('pg_sleep(600)') && r.innerText.includes('active')),
      null,
      { timeout: 15000 },
    );
    noErrors(page);
  });

  await check('top statements: the workload is listed; a statement opens with its charts', async () => {
    await page.goto(BASE + '/servers/primary/statements?' + recent(10));
    const row = page.locator('table[data-testid="statements"] tbody tr', { hasText: 'orders' }).first();
    await row.waitFor({ timeout: 20000 });
    await row.locator('a').first().click();
    await page.waitForURL(/queryid=/);
    await chartDrawn(page, 'Calls');
    await shot(page, '07-statements');
    noErrors(page);
  });

  await check('replication: the standby and its slot are listed', async () => {
    await page.goto(BASE + '/servers/primary/replication');
    await page.locator('table[data-testid="standbys"] tbody tr td.num').first().waitFor({ timeout: 20000 });
    await page.locator('table[data-testid="slots"] tbody tr', { hasText: 'replica_slot' }).waitFor();
    await shot(page, '08-replication');
    noErrors(page);
  });

  await check('wraparound: every database with its XID age', async () => {
    await page.goto(BASE + '/servers/primary/wraparound');
    await page.locator('table[data-testid="wraparound"] tbody tr', { hasText: 'shop' }).waitFor({ timeout: 20000 });
    await shot(page, '09-wraparound');
    noErrors(page);
  });

  await check('admin: adding a server through the form makes it appear in the fleet, up', async () => {
    await page.goto(BASE + '/admin/servers');
    await page.click('button:has-text("Add server")');
    await page.fill('dialog input[name=name]', 'replica');
    await page.fill('dialog input[name=host]', process.env.REPLICA_HOST);
    await page.fill('dialog input[name=port]', process.env.REPLICA_PORT);
    await page.fill('dialog input[name=user]', process.env.REPLICA_USER);
    await shot(page, '10-add-server');
    await page.click('dialog button[type=submit]');
    await page.locator('table[data-testid="servers-admin"] tbody tr', { hasText: 'replica' }).waitFor();
    await page.goto(BASE + '/');
    const row = page.locator('table[data-testid="fleet"] tbody tr', { hasText: 'replica' });
    await row.waitFor();
    await row.locator('.badge.up').waitFor({ timeout: 30000 });
    assert(/standby/i.test(await row.innerText()), 'the replica is not shown as a standby');
    await shot(page, '11-fleet-two-servers');
    noErrors(page);
  });

  await check('admin: test connection answers in a toast', async () => {
    await page.goto(BASE + '/admin/servers');
    const row = page.locator('table[data-testid="servers-admin"] tbody tr', { hasText: 'primary' });
    await row.locator('button', { hasText: 'Test connection' }).click();
    await page.locator('.toast.ok').waitFor({ timeout: 15000 });
    await shot(page, '12-admin-servers');
  });

  await check('admin: users, SSH keys (generate), audit, settings (save), system log', async () => {
    await page.goto(BASE + '/admin/users');
    await page.locator('table[data-testid="users"] tbody tr', { hasText: 'view' }).waitFor();
    await shot(page, '13-users');
    await page.goto(BASE + '/admin/ssh-keys');
    await page.click('button:has-text("Generate")');
    await page.fill('dialog input[name=name]', 'e2e-key');
    await page.click('dialog button[type=submit]');
    await page.locator('table[data-testid="ssh-keys"] tbody tr', { hasText: 'e2e-key' }).waitFor();
    assert(/SHA256:/.test(await page.locator('table[data-testid="ssh-keys"]').innerText()), 'no fingerprint');
    await shot(page, '14-ssh-keys');
    await page.goto(BASE + '/admin/audit');
    await page.locator('table[data-testid="audit"] tbody tr', { hasText: 'admin' }).first().waitFor();
    await shot(page, '15-audit');
    await page.goto(BASE + '/admin/settings');
    // The field is filled once the settings arrive: wait for a value, not only for the field.
    const filled = () => page.waitForFunction(() => /^\d+$/.test(document.querySelector('input[name=logs_retention_days]')?.value || ''));
    await filled();
    const field = page.locator('input[name=logs_retention_days]');
    const before = Number(await field.inputValue());
    await field.fill(String(before + 1));
    await page.click('button[type=submit]');
    await page.locator('.toast.ok').waitFor();
    await page.reload();
    await filled();
    const after = Number(await page.locator('input[name=logs_retention_days]').inputValue());
    assert(after === before + 1, `the setting was not saved: ${before} + 1 became ${after}`);
    await shot(page, '16-settings');
    await page.goto(BASE + '/admin/logs');
    await page.locator('table[data-testid="logs"] tbody tr').first().waitFor();
    assert((await rows(page, 'logs')) > 0, 'no system log rows');
    await shot(page, '17-logs');
    noErrors(page);
  });

  await check('Russian: chosen from the menu, kept across pages', async () => {
    await page.goto(BASE + '/');
    await page.selectOption('select[aria-label="Language"]', 'ru');
    await page.locator('header nav a', { hasText: 'Парк серверов' }).waitFor();
    await page.goto(BASE + '/servers/primary?' + recent());
    await chartDrawn(page, 'Транзакции');
    await shot(page, '18-server-ru');
    await page.selectOption('select[aria-label="Язык"]', 'en');
    noErrors(page);
  });

  await check('dark theme follows the OS; the fleet fits a phone', async () => {
    const dark = await newPage({ colorScheme: 'dark' });
    await login(dark, ADMIN);
    await dark.goto(BASE + '/servers/primary?' + recent());
    await chartDrawn(dark, 'Transactions');
    const bg = await dark.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert(bg !== 'rgb(247, 248, 250)' && bg !== 'rgb(255, 255, 255)', `dark theme not applied: ${bg}`);
    await shot(dark, '19-server-dark');
    const phone = await newPage({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    await login(phone, ADMIN);
    await phone.locator('table[data-testid="fleet"] tbody tr').first().waitFor();
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert(overflow <= 1, `the page is ${overflow}px wider than the phone`);
    await shot(phone, '20-fleet-phone');
    noErrors(dark);
    noErrors(phone);
  });

  await check('tabs share the session: a new tab needs no login, a logout in one ends every tab', async () => {
    const a = await newPage();
    await login(a, ADMIN);
    await a.locator('table[data-testid="fleet"] tbody tr').first().waitFor();
    const b = await a.context().newPage();
    b.errors = [];
    b.on('pageerror', (e) => b.errors.push(e.message));
    await b.goto(BASE + '/servers/primary/wraparound');
    await b.locator('table[data-testid="wraparound"] tbody tr').first().waitFor({ timeout: 20000 });
    assert(!b.url().includes('/login'), 'the second tab asked for a login');
    await b.click('header button:has-text("Log out")');
    await a.waitForURL(/\/login/, { timeout: 10000 });
    await b.waitForURL(/\/login/, { timeout: 10000 });
    const at = Date.now();
    await a.waitForTimeout(3000);
    const late = a.apiRequests.filter((r) => r.at > at);
    assert(late.length === 0, `the first tab kept asking: ${late.map((r) => r.url).join(', ')}`);
    noErrors(a);
    noErrors(b);
  });

  await check('viewer: no admin pages, no cancel or terminate buttons', async () => {
    const v = await newPage();
    await login(v, VIEWER);
    assert((await v.locator('header nav a', { hasText: 'Users' }).count()) === 0, 'a viewer sees the admin menu');
    await v.goto(BASE + '/servers/primary/activity');
    await v.locator('table[data-testid="sessions"] tbody tr').first().waitFor({ timeout: 20000 });
    assert((await v.locator('table[data-testid="sessions"] tbody tr').count()) > 0, 'no sessions for the viewer');
    assert((await v.locator('table[data-testid="sessions"] button', { hasText: /Cancel|Terminate/ }).count()) === 0, 'a viewer sees signal buttons');
    await shot(v, '21-activity-viewer');
    await v.goto(BASE + '/admin/users');
    await v.locator('h1', { hasText: 'Page not found' }).waitFor();
    noErrors(v);

    // The session ends (the admin disables the account): the page returns to the login form, once.
    v.allow401 = true;
    await v.goto(BASE + '/');
    await v.locator('table[data-testid="fleet"] tbody tr').first().waitFor();
    const tok = await (await fetch(BASE + '/api/token', { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ username: ADMIN[0], password: ADMIN[1] }) })).json();
    const r = await fetch(BASE + '/api/users/view', { method: 'PUT', headers: { Authorization: `Bearer ${tok.access_token}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ is_active: false }) });
    assert(r.ok, `disabling the viewer: ${r.status}`);
    await v.waitForURL(/\/login/, { timeout: 30000 });
    const at = Date.now();
    await v.waitForTimeout(12000);
    const after = v.apiRequests.filter((x) => x.at > at);
    assert(after.length === 0, `requests after landing on the login page: ${after.map((x) => x.url).join(', ')}`);
    await v.locator('input[name=username]').waitFor();
    await shot(v, '22-expired');
    noErrors(v);
  });

  await browser.close();
  console.log('all browser checks passed');
} catch (e) {
  console.log(`not ok - ${step}\n${e.stack || e}`);
  if (lastPage) {
    console.log(`at ${lastPage.url()}; errors: ${lastPage.errors.slice(0, 5).join('; ')}; screenshot: ${SHOTS}/failure.png`);
    await lastPage.screenshot({ path: `${SHOTS}/failure.png`, fullPage: true }).catch(() => {});
  }
  await browser.close().catch(() => {});
  process.exit(1);
}
