// What every browser script shares: Debian's Chromium through playwright-core, axe-core checking
// each page against WCAG 2.1 AA, any console error (a blocked resource, a Content-Security-Policy
// violation) counted as a problem, screenshots, and the JSON report on stdout.
//
// A script calls visit(async (t) => report) and is run as
//   node SCRIPT BASE_URL CHROMIUM SCREENSHOT_DIR [all]
// (NODE_PATH = the folder scripts/browser-tools.sh prints). It exits non-zero with the reasons.

const { chromium } = require('playwright-core');
const axe = require('axe-core');
const fs = require('fs');
const path = require('path');

const [base, executablePath, shots, every] = process.argv.slice(2);

function expect(condition, message) {
  if (!condition) throw new Error(message);
}

async function visit(script) {
  const problems = [];
  const pages = [];
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

  async function check(name) {
    pages.push(name);
    await page.evaluate(axe.source);
    const result = await page.evaluate(() =>
      axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }));
    for (const v of result.violations) {
      problems.push(`${name}: axe ${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
    }
    if (every === 'all') await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
  }

  let report = {};
  try {
    report = await script({ base, page, context, check, expect, every, shots });
  } catch (e) {
    problems.push(`${e.message} (at ${page.url()})`);
  }
  if (problems.length) {
    await page.screenshot({ path: path.join(shots, 'failure.png'), fullPage: true }).catch(() => {});
    console.error(problems.join('\n'));
    console.error(`screenshot of the last page: ${path.join(shots, 'failure.png')}`);
  } else {
    console.log(JSON.stringify({ pages, ...report }));
  }
  await browser.close();
  process.exit(problems.length ? 1 : 0);
}

module.exports = { visit, expect };
