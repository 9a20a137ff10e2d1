// Drives the klosetd web viewer in headless Chromium (run by tests/web_viewer.rs):
//
//   node tests/web/viewer.mjs BASE_URL DOWNLOAD_DIR SCREENSHOT_DIR EXPECT_JSON
//
// EXPECT_JSON: {"store": "...", "schedule": "...", "path": ["dir", ..., "file"],
//               "raw": {"dir": "...", "file": "..."}} (raw: names that are not
//               UTF-8, as shown: lossy; their links carry the exact bytes).
// Opens the overview, clicks store -> latest snapshot -> directories -> the
// file link and saves the download, opens the schedule page and counts the
// plot points, loads pages again with JavaScript disabled and compares, and
// takes full-page screenshots. Prints one JSON line with what it saw; any
// failed check throws (exit code 1) with a message naming the page.
// Chromium: $CHROMIUM, else /usr/bin/chromium (Debian's `chromium` package).

import { chromium } from 'playwright-core';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const [base, downloadDir, shotDir, expectJson] = process.argv.slice(2);
if (!base || !downloadDir || !shotDir || !expectJson) {
  console.error('usage: viewer.mjs BASE_URL DOWNLOAD_DIR SCREENSHOT_DIR EXPECT_JSON');
  process.exit(2);
}
const expect = JSON.parse(expectJson);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
if (!existsSync(executablePath)) {
  console.error(`no Chromium at ${executablePath}: apt-get install -y chromium`);
  process.exit(2);
}

const CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";
const problems = [];
function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
}
function watch(page, label) {
  // CSP violations and broken pages show up as console errors.
  page.on('console', (m) => {
    const at = m.location().url || '';
    // The deliberate 404 page logs its own status.
    if (m.type() === 'error' && !at.includes('/ui/no/such/page')) {
      problems.push(`${label}: console error at ${at}: ${m.text()}`);
    }
  });
  page.on('pageerror', (e) => problems.push(`${label}: page error: ${e.message}`));
  page.on('requestfailed', (r) => {
    // A download navigation is "aborted" by design.
    if (!r.url().includes('/files/')) problems.push(`${label}: request failed: ${r.url()}`);
  });
}
async function shot(page, name) {
  await page.screenshot({ path: join(shotDir, `${name}.png`), fullPage: true });
}
async function visit(page, url, status = 200) {
  const resp = await page.goto(url);
  check(resp, `no response for ${url}`);
  check(resp.status() === status, `${url}: status ${resp.status()}, expected ${status}`);
  const h = resp.headers();
  check(h['content-type'] === 'text/html; charset=utf-8', `${url}: content-type ${h['content-type']}`);
  check(h['content-security-policy'] === CSP, `${url}: CSP ${h['content-security-policy']}`);
  check(h['x-content-type-options'] === 'nosniff', `${url}: no nosniff`);
  return resp;
}

const browser = await chromium.launch({ executablePath, headless: true, timeout: 60_000 });
const result = {};
try {
  const context = await browser.newContext({
    acceptDownloads: true,
    viewport: { width: 1280, height: 900 },
  });
  context.setDefaultTimeout(20_000);
  const page = await context.newPage();
  watch(page, 'js');

  // The overview: the store and the schedule are listed.
  await visit(page, `${base}/`);
  const storeLink = page.locator('table.stores').getByRole('link', { name: expect.store, exact: true });
  const scheduleLink = page
    .locator('table.schedules')
    .getByRole('link', { name: expect.schedule, exact: true });
  check((await storeLink.count()) === 1, 'the overview lists the store');
  check((await scheduleLink.count()) === 1, 'the overview lists the schedule');
  check((await page.locator('h2', { hasText: 'Configuration' }).count()) === 1, 'config section');
  check((await page.locator('table.tasks tbody tr').count()) >= 2, 'recent tasks are listed');
  await shot(page, 'overview');

  // Store -> latest snapshot (the first row) -> directories -> the file.
  await storeLink.click();
  await page.waitForURL(`**/ui/stores/${encodeURIComponent(expect.store)}`);
  const rows = page.locator('table.snapshots tbody tr');
  check((await rows.count()) >= 1, 'the store lists snapshots');
  await shot(page, 'store');
  await rows.first().locator('a').first().click();
  await page.waitForURL('**/tree/');
  const rootUrl = page.url();
  const dirs = expect.path.slice(0, -1);
  const file = expect.path[expect.path.length - 1];
  for (const [i, dir] of dirs.entries()) {
    if (i === 1) {
      // Awkward names show as they are (escaped, not interpreted); a
      // newline shows as its control picture.
      for (const n of expect.shown || []) {
        const c = await page.locator('table.listing').getByText(n, { exact: true }).count();
        check(c === 1, `the listing shows the name ${JSON.stringify(n)}`);
      }
      await shot(page, 'tree-names');
    }
    const link = page.locator('table.listing').getByRole('link', { name: `${dir}/`, exact: true });
    const to = await link.getAttribute('href');
    await link.click();
    await page.waitForURL((u) => u.pathname === to);
  }
  const crumbs = await page.locator('nav.crumbs').innerText();
  for (const dir of dirs) check(crumbs.includes(dir), `breadcrumbs show ${dir}: ${crumbs}`);
  const fileLink = page.locator('table.listing').getByRole('link', { name: file, exact: true });
  check((await fileLink.count()) === 1, `the listing shows ${file} by its exact name`);
  const href = await fileLink.getAttribute('href');
  check(href.startsWith('/api/v1/stores/') && href.includes('/files/'), `download href ${href}`);
  result.treeUrl = page.url();
  result.treeText = await page.locator('main').innerText();
  await shot(page, 'tree');
  const [download] = await Promise.all([page.waitForEvent('download'), fileLink.click()]);
  result.download = join(downloadDir, 'downloaded.bin');
  await download.saveAs(result.download);
  result.suggestedFilename = download.suggestedFilename();
  // Content-Disposition carries the exact name; Chromium replaces the
  // characters that file systems reject (<>:"/\\|?*) with '_'.
  const safeName = file.replace(/[<>:"/\\|?*]/g, '_');
  check(result.suggestedFilename === safeName, `download name ${result.suggestedFilename}`);

  // A directory and a file whose names are not UTF-8: shown lossy, linked
  // by their exact bytes, downloaded exactly.
  if (expect.raw) {
    await visit(page, rootUrl);
    const rawDir = page.locator('table.listing').getByRole('link', { name: `${expect.raw.dir}/`, exact: true });
    check((await rawDir.count()) === 1, `the listing shows ${expect.raw.dir}/`);
    const to = await rawDir.getAttribute('href');
    check(to.includes('%FF'), `the raw directory's link carries its bytes: ${to}`);
    await rawDir.click();
    await page.waitForURL((u) => u.pathname === to);
    const rawFile = page.locator('table.listing').getByRole('link', { name: expect.raw.file, exact: true });
    check((await rawFile.count()) === 1, `the listing shows ${expect.raw.file}`);
    const rawHref = await rawFile.getAttribute('href');
    check(rawHref.includes('/files/') && rawHref.includes('%E9'), `raw download href ${rawHref}`);
    await shot(page, 'tree-raw');
    const [rawDownload] = await Promise.all([page.waitForEvent('download'), rawFile.click()]);
    result.rawDownload = join(downloadDir, 'raw.bin');
    await rawDownload.saveAs(result.rawDownload);
    result.rawSuggestedFilename = rawDownload.suggestedFilename();
  }

  // The schedule page: two plots, each with a point per succeeded run.
  await visit(page, `${base}/`);
  await scheduleLink.click();
  await page.waitForURL(`**/ui/schedules/${encodeURIComponent(expect.schedule)}`);
  result.durationPoints = await page.locator('#plot-duration svg circle.pt').count();
  result.bytesPoints = await page.locator('#plot-bytes-added svg circle.pt').count();
  check(result.durationPoints >= 2, `duration plot has ${result.durationPoints} points`);
  check(result.bytesPoints >= 2, `bytes plot has ${result.bytesPoints} points`);
  const axisLabels = await page.locator('#plot-duration svg text').count();
  check(axisLabels >= 4, `the duration plot has axis labels (${axisLabels})`);
  await shot(page, 'schedule');

  // An unknown page is an HTML 404.
  await visit(page, `${base}/ui/no/such/page`, 404);
  check((await page.locator('h1', { hasText: '404' }).count()) === 1, '404 heading');
  await shot(page, 'not-found');

  // Without JavaScript the pages render the same.
  const nojs = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 1280, height: 900 } });
  const page2 = await nojs.newPage();
  watch(page2, 'nojs');
  await visit(page2, result.treeUrl);
  const nojsText = await page2.locator('main').innerText();
  check(nojsText === result.treeText, 'the directory page reads the same without JavaScript');
  check(
    (await page2.locator('table.listing').getByRole('link', { name: file, exact: true }).count()) === 1,
    'the file link is there without JavaScript',
  );
  await shot(page2, 'tree-nojs');
  await visit(page2, `${base}/ui/schedules/${encodeURIComponent(expect.schedule)}`);
  const nojsPoints = await page2.locator('#plot-duration svg circle.pt').count();
  check(nojsPoints >= 2, `without JavaScript the plot has ${nojsPoints} points`);
  await visit(page2, `${base}/`);
  check((await page2.locator('table.stores tbody tr').count()) >= 1, 'overview without JavaScript');
  await shot(page2, 'overview-nojs');

  check(problems.length === 0, problems.join('\n'));
  delete result.treeText;
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
