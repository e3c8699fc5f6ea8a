// A citizen's visit in a real browser (Debian's Chromium through playwright-core): the pages
// they read, a contact form sent with errors and then right, the case followed with its code and
// key. axe-core checks every page against WCAG 2.1 AA; any console error (a blocked resource, a
// Content-Security-Policy violation) fails the run; the first load's weight is measured.
//
// Run by tests/browser.rs: node citizen.cjs BASE_URL CHROMIUM SCREENSHOT_DIR [all]
// (NODE_PATH = the folder scripts/browser-tools.sh prints). Exits non-zero with the reason.

const { chromium } = require('playwright-core');
const axe = require('axe-core');
const fs = require('fs');
const path = require('path');

const [base, executablePath, shots, every] = process.argv.slice(2);
const problems = [];
const pages = [];

async function check(page, name) {
  pages.push(name);
  await page.evaluate(axe.source);
  const result = await page.evaluate(() =>
    axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }));
  for (const v of result.violations) {
    problems.push(`${name}: axe ${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  }
  if (every === 'all') await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

function expect(condition, message) {
  if (!condition) throw new Error(message);
}

(async () => {
  fs.mkdirSync(shots, { recursive: true });
  const browser = await chromium.launch({ executablePath, args: ['--no-sandbox', '--disable-gpu'] });
  const context = await browser.newContext({ locale: 'it-IT', viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    // A page answered with an error status (a form with errors: 422) is what the test asked for.
    if (m.text().startsWith('Failed to load resource') && m.location().url === page.url()) return;
    problems.push(`console on ${page.url()}: ${m.text().slice(0, 300)}`);
  });
  page.on('pageerror', (e) => problems.push(`script error on ${page.url()}: ${e.message}`));
  let weight = 0;
  page.on('requestfinished', async (r) => {
    const sizes = await r.sizes().catch(() => null);
    if (sizes) weight += sizes.responseBodySize + sizes.responseHeadersSize;
  });
  try {
    // Home, first load with an empty cache: its weight as sent over the wire.
    await page.goto(`${base}/`, { waitUntil: 'networkidle' });
    expect((await page.textContent('h1')).includes('Ufficio Relazioni con il Pubblico'), 'home: no title');
    const firstLoad = weight;
    await check(page, 'home');

    await page.click('nav[aria-label="Navigazione principale"] >> text=Servizi');
    expect(await page.locator('article').count() > 0, 'servizi: no service listed');
    await check(page, 'servizi');
    await page.locator('article h2 a').first().click();
    expect(await page.locator('text=Cosa serve').count() === 1, 'a service page without "Cosa serve"');
    await check(page, 'servizio');

    // The form sent empty: every error next to its field, and a summary that links to them.
    await page.goto(`${base}/contatti/nuovo`);
    await check(page, 'contatto');
    await page.click('button[type=submit]');
    expect((await page.title()).startsWith('Errore'), 'the page with errors does not say so in its title');
    for (const field of ['comune', 'kind', 'subject', 'privacy_consent']) {
      expect(await page.locator(`#${field}-errore`).isVisible(), `no error shown next to ${field}`);
    }
    expect(await page.getAttribute('#subject', 'aria-invalid') === 'true', 'subject not marked invalid');
    await check(page, 'contatto-errori');
    if (every === 'all') await page.screenshot({ path: path.join(shots, 'contatto-errori.png'), fullPage: true });

    // Filled in right.
    await page.selectOption('#comune', { label: 'Massafra' });
    await page.click('label[for=kind-segnalazione]');
    await page.fill('#subject', 'Lampione spento in via Verdi');
    await page.fill('#description', 'Da tre sere il lampione davanti al civico 12 è spento.');
    await page.fill('#email', 'cittadina@example.it');
    await page.click('label[for=privacy_consent]', { position: { x: 8, y: 8 } });
    await page.click('button[type=submit]');
    const code = (await page.textContent('#codice-pratica')).trim();
    const key = (await page.textContent('#chiave-accesso')).trim();
    expect(/^MAS-\d{4}-\d{6}$/.test(code), `unexpected case code ${code}`);
    expect(key.length >= 16, 'no access key shown');
    expect(!page.url().includes(key) && !page.url().includes('cittadina'), 'the key or the address is in the URL');
    await check(page, 'contatto-inviato');

    // Followed with a wrong key, then the right one.
    await page.click('text=Segui la tua pratica >> nth=-1');
    await page.fill('#code', code);
    await page.fill('#key', 'chiave-sbagliata');
    await page.click('button[type=submit]');
    expect(await page.locator('.alert-danger').isVisible(), 'a wrong key shows no error');
    await check(page, 'pratica-non-trovata');
    await page.fill('#code', code.toLowerCase());
    await page.fill('#key', key);
    await page.click('button[type=submit]');
    expect((await page.textContent('#stato-pratica')).trim() === 'Ricevuta', 'the case is not shown as received');
    expect(!page.url().includes(key), 'the key is in the URL');
    await check(page, 'pratica');

    await page.goto(`${base}/privacy`);
    await check(page, 'privacy');
    await page.goto(`${base}/pagina-che-non-esiste`);
    await check(page, 'pagina-non-trovata');

    console.log(JSON.stringify({ pages, first_load_bytes: firstLoad }));
  } catch (e) {
    problems.push(`${e.message} (at ${page.url()})`);
  }
  if (problems.length) {
    await page.screenshot({ path: path.join(shots, 'failure.png'), fullPage: true }).catch(() => {});
    console.error(problems.join('\n'));
    console.error(`screenshot of the last page: ${path.join(shots, 'failure.png')}`);
  }
  await browser.close();
  process.exit(problems.length ? 1 : 0);
})();
