// korcam.mjs — drives the korcam's page in Debian's chromium (playwright-core, no downloaded
// browser) for tests/sys_korcam_web.sh: log in, filter the queue, open a conflict (both sides,
// history, the SVG map), resolve it, check that a second decision is refused, look at the summary,
// and that a household name holding markup is shown as text and never runs. Then a korcam of
// another kecamatan logs in and sees nothing. Screenshots go to $SHOTS. Prints one JSON object
// of findings; exits 1 on the first failed expectation (with what was expected).
//
// Environment: KORCAM_URL (http://127.0.0.1:PORT/korcam/), K1 K1_PASSWORD, K2 K2_PASSWORD,
// FIELD_HH (a household with an open roof_material conflict), XSS_TEXT (a head name holding
// markup), OPEN_ID (an open conflict of K1's kecamatan), SHOTS (a directory), PROFILE (a fresh
// --user-data-dir).
import { chromium } from 'playwright-core';

const env = (k) => { const v = process.env[k]; if (!v) throw new Error(`${k} is not set`); return v; };
const URL = env('KORCAM_URL'), SHOTS = env('SHOTS'), PROFILE = env('PROFILE');
const out = { steps: [] };
const fail = (msg) => { out.error = msg; console.log(JSON.stringify(out)); process.exit(1); };
const expect = (cond, msg) => { if (!cond) fail(msg); out.steps.push(msg); };

const ctx = await chromium.launchPersistentContext(PROFILE, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1280, height: 860 },
  deviceScaleFactor: 1,
});
const errors = [];
try {
  const page = ctx.pages()[0] || await ctx.newPage();
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('dialog', (d) => { errors.push('dialog: ' + d.message()); d.dismiss(); });

  // ---- log in ------------------------------------------------------------------------------
  await page.goto(URL);
  await page.waitForSelector('#login:not([hidden])');
  await page.fill('#login-user', env('K1'));
  await page.fill('#login-password', 'wrong password');
  await page.click('#login-form button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#login-error').textContent.length > 0);
  expect(/wrong user id or password/.test(await page.textContent('#login-error')),
         'a wrong password is refused on the page');
  await page.fill('#login-password', env('K1_PASSWORD'));
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('#app:not([hidden])');
  await page.waitForSelector('#list tbody tr');
  const cookies = await ctx.cookies();
  const c = cookies.find((x) => x.name === 'pd_korcam');
  expect(c && c.httpOnly && c.sameSite === 'Strict', 'the session cookie is HttpOnly and SameSite=Strict');
  expect(await page.evaluate(() => document.cookie.includes('pd_korcam')) === false,
         'the page script cannot read the session cookie');
  out.all_rows = await page.locator('#list tbody tr').count();

  // ---- markup in a name is text --------------------------------------------------------------
  const xss = env('XSS_TEXT');
  const listText = await page.textContent('#list tbody');
  expect(listText.includes(xss), 'the name with markup is shown as its literal text');
  expect(await page.evaluate(() => window.__xss === undefined), 'the markup in the name never ran');
  expect(await page.locator('#list img, #list script, #d-members img').count() === 0,
         'no element was made from the name');

  // ---- filter ------------------------------------------------------------------------------
  await page.selectOption('#f-kind', 'field');
  await page.click('#filters button[type=submit]');
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('#list tbody tr')];
    return rows.length > 0 && rows.every((tr) => tr.cells[1].textContent === 'field');
  });
  out.field_rows = await page.locator('#list tbody tr').count();
  expect(out.field_rows < out.all_rows, 'the kind filter narrows the queue');
  await page.screenshot({ path: `${SHOTS}/korcam-queue.png` });

  // ---- one conflict --------------------------------------------------------------------------
  const hh = env('FIELD_HH');
  const row = page.locator('#list tbody tr', { hasText: hh }).filter({ hasText: 'roof_material' });
  expect(await row.count() === 1, `the roof_material conflict of ${hh} is listed`);
  const id = await row.getAttribute('data-id');
  out.field_conflict = Number(id);
  await row.click();
  await page.waitForSelector('#detail:not([hidden])');
  await page.waitForFunction((i) => document.querySelector('#d-title').textContent.includes('#' + i), id);
  const sides = await page.locator('#d-sides tbody tr').allTextContents();
  expect(sides.some((t) => t.startsWith('Value')) && sides.some((t) => t.startsWith('Who')),
         'both sides are shown, value and who');
  expect(sides.some((t) => t.includes('(E0001)')) && sides.some((t) => t.includes('(E0002)')),
         'each side names its enumerator');
  expect(await page.locator('#d-map svg rect.home, #d-map svg circle.visit').count() >= 1,
         'the map draws the GPS points');
  expect(await page.locator('#d-map svg polygon.desa').count() === 1, 'the map draws the desa outline');
  expect(await page.locator('#d-history tbody tr').count() >= 2, 'the history lists the changes');
  expect(await page.isVisible('#resolve button[data-action=device]'), 'the decision buttons are shown');
  expect(!(await page.isVisible('#resolve button[data-action=merge]')),
         'buttons a field conflict does not allow are hidden');
  await page.screenshot({ path: `${SHOTS}/korcam-conflict.png`, fullPage: true });

  // ---- resolve, then a second time ----------------------------------------------------------
  await page.fill('#r-note', 'Checked with the family: the new roof is tile.');
  await page.click('#resolve button[data-action=device]');
  await page.waitForFunction(() => document.querySelector('#d-resolution').textContent.startsWith('Resolved: device'));
  expect(await page.isHidden('#resolve'), 'a decided conflict has no buttons left');
  await page.waitForFunction((i) => !document.querySelector(`#list tbody tr[data-id="${i}"]`), id);
  out.field_rows_after = await page.locator('#list tbody tr').count();
  const again = await page.evaluate(async (i) => {
    const me = await (await fetch('api/me')).json();
    const r = await fetch(`api/conflicts/${i}/resolve`, {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf },
      body: JSON.stringify({ action: 'server' }) });
    return { status: r.status, body: await r.json() };
  }, id);
  expect(again.status === 409 && again.body.error === 'already_resolved', 'a second decision is refused (409)');
  const noCsrf = await page.evaluate(async (i) => (await fetch(`api/conflicts/${i}/resolve`, {
    method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json' },
    body: '{"action":"server"}' })).status, env('OPEN_ID'));
  expect(noCsrf === 403, 'a POST without the CSRF token is refused');

  // ---- summary -------------------------------------------------------------------------------
  await page.click('#tab-summary');
  await page.waitForSelector('#sum tbody tr');
  out.summary = await page.locator('#sum tbody tr').allTextContents();
  expect(out.summary.length >= 2, 'the summary has a row per desa');
  expect((await page.textContent('#sum tfoot')).includes('kecamatan'), 'the summary has totals');
  await page.screenshot({ path: `${SHOTS}/korcam-summary.png` });

  // ---- another kecamatan's korcam sees nothing ----------------------------------------------
  await page.click('#tab-queue');
  await page.click('#logout');
  await page.waitForSelector('#login:not([hidden])');
  await page.fill('#login-user', env('K2'));
  await page.fill('#login-password', env('K2_PASSWORD'));
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('#app:not([hidden])');
  await page.selectOption('#f-state', 'all');
  await page.click('#filters button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#count').textContent.startsWith('0 '));
  expect(await page.locator('#list tbody tr').count() === 0, 'another kecamatan lists no conflict');
  const peek = await page.evaluate(async (ids) => {
    const me = await (await fetch('api/me')).json();
    const show = await fetch(`api/conflicts/${ids[0]}`);
    const res = await fetch(`api/conflicts/${ids[1]}/resolve`, {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf },
      body: JSON.stringify({ action: 'server' }) });
    return [show.status, res.status];
  }, [id, env('OPEN_ID')]);
  expect(peek[0] === 404 && peek[1] === 404, 'another kecamatan can neither see nor decide (404)');
  expect(errors.length === 0, 'no script error on the page: ' + errors.join('; '));
} catch (e) {
  fail(String(e && e.stack || e));
} finally {
  await ctx.close();
}
console.log(JSON.stringify(out));
