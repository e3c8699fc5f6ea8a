// An URP operator's morning in a real browser: signing in (a wrong password first), the inbox
// and its filters, a citizen registered at the counter, the subject search, the case worked from
// taken in charge to closed with a refusal of the domain on the way — the citizen uploading the
// documents asked for on the case's page (a disguised file refused), the operator downloading
// them, then the citizen rating the closed case, which the statistics count — the statistics,
// signing out; then a supervisor of another comune who must not see that case nor its document,
// and an administrator.
// harness.cjs checks every page with axe-core and fails on any console error.
//
// Credentials come in SPORTELLO_TEST_OPERATOR, SPORTELLO_TEST_OTHER and SPORTELLO_TEST_ADMIN as
// `username:password`.

const { visit, expect } = require('./harness.cjs');

const [operator, operatorPassword] = process.env.SPORTELLO_TEST_OPERATOR.split(':');
const [other, otherPassword] = process.env.SPORTELLO_TEST_OTHER.split(':');
const [admin, adminPassword] = process.env.SPORTELLO_TEST_ADMIN.split(':');

async function signIn(page, username, password) {
  await page.fill('#username', username);
  await page.fill('#password', password);
  await page.click('button[type=submit]');
}

visit(async ({ base, page, context, check }) => {
  // The staff's pages send whoever is not signed in to the sign-in page.
  await page.goto(`${base}/ufficio`);
  expect(new URL(page.url()).pathname === '/ufficio/accesso', 'the inbox opened without signing in');
  await check('accesso');
  await signIn(page, operator, 'password-sbagliata');
  expect(await page.locator('#errore-accesso').isVisible(), 'a wrong password shows no error');
  await check('accesso-errato');
  await signIn(page, operator, operatorPassword);
  expect(new URL(page.url()).pathname === '/ufficio', 'not in the inbox after signing in');
  const session = (await context.cookies()).find((c) => c.name === 'sportello_sessione');
  expect(session && session.httpOnly && session.secure && session.sameSite === 'Lax',
    `the session cookie is not HttpOnly, Secure and SameSite=Lax: ${JSON.stringify(session)}`);
  const listed = await page.locator('table.sportello-inbox tbody tr').count();
  expect(listed > 0, 'the inbox lists no case');
  await check('pratiche');

  // A filter, by the form.
  await page.selectOption('#stato', 'closed');
  await page.click('form.sportello-filters button[type=submit]');
  for (const status of await page.locator('table.sportello-inbox tbody td:nth-child(3)').allTextContents()) {
    expect(status.trim() === 'Chiusa', `a case "${status}" among the closed ones`);
  }
  await check('pratiche-filtrate');

  // A citizen at the counter.
  await page.click('nav >> text=Registra un contatto');
  await check('sportello');
  await page.selectOption('#channel', 'sportello');
  await page.selectOption('#kind', 'reclamo');
  await page.fill('#subject', 'Rumore notturno dal cantiere di via Dante');
  await page.fill('#name', 'Anna Verdi');
  await page.click('label[for=privacy_informed-box]', { position: { x: 8, y: 8 } });
  await page.click('form.sportello-form button[type=submit]');
  expect(await page.locator('#registrata').isVisible(), 'the contact was not registered');
  const code = (await page.textContent('#registrata strong >> nth=0')).trim();
  const key = (await page.textContent('#registrata strong >> nth=1')).trim();
  expect(/^MAS-\d{4}-\d{6}$/.test(code), `unexpected case code ${code}`);
  await check('sportello-registrato');

  // Found by words of its subject (posted: the words never reach a URL), once the inbox has it.
  let found = 0;
  for (let i = 0; i < 50 && found === 0; i++) {
    await page.goto(`${base}/ufficio`);
    await page.fill('#testo', 'cantiere di via Dante');
    await page.click('form.sportello-filters button[type=submit]');
    found = await page.locator(`table.sportello-inbox a:text-is("${code}")`).count();
    if (found === 0) await page.waitForTimeout(200);
  }
  expect(found === 1, `the subject search does not find ${code}`);
  expect(!page.url().includes('cantiere'), 'the search words are in the URL');
  await check('ricerca');
  await page.click(`table.sportello-inbox a:text-is("${code}")`);
  const caseUrl = page.url();
  expect((await page.textContent('#cittadino')).includes('Anna Verdi'), 'the citizen is not shown');
  await check('pratica');

  async function act(action, fill) {
    await page.click(`#azione-${action} summary`);
    if (fill) await fill();
    await page.click(`#azione-${action} button[type=submit]`);
  }
  await act('take-in-charge');
  expect((await page.textContent('#stato')).trim() === 'Presa in carico', 'not taken in charge');
  await act('request-documents', () => page.fill('#documents', "Documento d'identità"));
  expect((await page.textContent('#stato')).trim() === 'In attesa di documenti', 'no documents asked for');

  // The citizen follows the case with its code and key and uploads the documents asked for:
  // first a file that only claims to be a PDF, refused beside the form; then a real one.
  async function follow() {
    await page.goto(`${base}/pratiche`);
    await page.fill('#code', code);
    await page.fill('#key', key);
    await page.click('form[action="/pratiche"] button[type=submit]');
  }
  async function upload(files) {
    await page.setInputFiles('#documents', files);
    await page.click('form[action="/pratiche/documenti"] button[type=submit]');
  }
  await follow();
  await upload([{ name: 'nota.pdf', mimeType: 'application/pdf', buffer: Buffer.from('solo testo') }]);
  expect(await page.locator('#errore-documenti').isVisible(), 'a file that is not a PDF was accepted');
  expect((await page.textContent('#errore-documenti')).includes('nota.pdf'), 'the refusal does not name the file');
  await check('pratica-cittadino-file-rifiutato');
  const identity = Buffer.from('%PDF-1.4\n% carta d\'identità di prova\n%%EOF\n');
  await upload([{ name: 'carta-identità.pdf', mimeType: 'application/pdf', buffer: identity }]);
  expect(await page.locator('#fatto').isVisible(), 'the documents sent are not acknowledged');
  expect((await page.textContent('#fatto')).includes('carta-identità.pdf'), 'the receipt does not name the file');
  await check('pratica-cittadino');
  await page.goto(caseUrl);
  expect((await page.textContent('#stato')).trim() === 'Presa in carico', 'the term did not resume');
  // The operator finds the file on the case's page and downloads exactly what was sent.
  const link = page.locator('#documenti a', { hasText: 'carta-identità.pdf' });
  expect(await link.isVisible(), 'the document is not listed on the case page');
  // Fetched from the page (the session's cookie is Secure: the browser sends it to localhost,
  // Playwright's own request client would not).
  const documentUrl = await link.getAttribute('href');
  const fetchFile = (url) => page.evaluate(async (u) => {
    const r = await fetch(u);
    return { status: r.status, disposition: r.headers.get('content-disposition') || '',
      bytes: [...new Uint8Array(await r.arrayBuffer())] };
  }, url);
  const downloaded = await fetchFile(documentUrl);
  expect(downloaded.status === 200, `the document did not download: ${downloaded.status}`);
  expect(Buffer.compare(Buffer.from(downloaded.bytes), identity) === 0,
    `the downloaded file differs from the one sent: ${Buffer.from(downloaded.bytes).toString('utf8').slice(0, 80)}`);
  expect(downloaded.disposition.startsWith('attachment'), 'the document is not a download');
  await act('assign', () => page.fill('#operator', 'Mario Rossi'));
  await act('answer', () => page.fill('#text', 'Il cantiere lavorerà solo di giorno da lunedì.'));
  await act('close', () => page.selectOption('#outcome', 'accolta'));
  expect((await page.textContent('#stato')).trim() === 'Chiusa', 'not closed');
  // The domain refuses an answer to a closed case, beside the form, in Italian.
  await act('answer', () => page.fill('#text', 'Una seconda risposta'));
  expect(await page.locator('#errore-answer').isVisible(), 'no refusal beside the answer form');
  await check('pratica-rifiuto');

  // The citizen rates the closed case; the statistics count the rating.
  const month = new Date().toISOString().slice(0, 7);
  async function starsThisMonth() {
    await page.goto(`${base}/ufficio/statistiche?dal=${month}&al=${month}&comune=073015`);
    return page.evaluate(() => {
      const rows = [...document.querySelectorAll('#soddisfazione-per-mese tbody tr')];
      const stars = rows.find((r) => r.cells[1].textContent.includes('Stelle'));
      return stars ? Number(stars.cells[2].textContent) : 0;
    });
  }
  const before = await starsThisMonth();
  await follow();
  await page.click('label[for=stella-5]');
  await page.click('[data-element="feedback"] button[type=submit]');
  await page.click('label[for=motivo-indicazioni_chiare]');
  await page.click('form.sportello-form button[type=submit]');
  expect((await page.textContent('h1')).includes('Grazie'), 'no thanks after rating the case');
  await check('valutazione-pratica');
  let after = before;
  for (let i = 0; i < 50 && after === before; i++) {
    after = await starsThisMonth();
    if (after === before) await page.waitForTimeout(200);
  }
  expect(after === before + 1, `the statistics count ${after} ratings this month, not ${before + 1}`);

  // The statistics: each chart an SVG with its data table, readable without JavaScript.
  await page.click('nav >> text=Statistiche');
  await page.fill('#dal', '2020-01');
  await page.click('form.sportello-filters button[type=submit]');
  const charts = await page.locator('figure.sportello-figure svg[role=img]').count();
  const tables = await page.locator('section table caption').count();
  expect(charts >= 3 && charts === tables, `${charts} charts and ${tables} data tables`);
  // Fetched by the page itself, with its session (the cookie is Secure: only the browser sends it).
  const href = await page.locator('a[href^="/ufficio/statistiche/termini-per-mese.csv"]').getAttribute('href');
  const csv = await page.evaluate(async (u) => (await fetch(u)).text(), href);
  expect(csv.startsWith('Mese,Aperte,Chiuse'), `the CSV of a chart is not its table: ${csv.slice(0, 80)}`);
  await check('statistiche');

  // Signing out ends the session: the inbox asks to sign in again.
  await page.click('nav >> text=Esci');
  expect(await page.locator('text=Sei uscito').isVisible(), 'no confirmation of signing out');
  await page.goto(`${base}/ufficio`);
  expect(new URL(page.url()).pathname === '/ufficio/accesso', 'the inbox still opens after signing out');

  // A supervisor of another comune neither finds nor opens the case.
  await signIn(page, other, otherPassword);
  await page.fill('#codice', code);
  await page.click('form.sportello-filters button[type=submit]');
  expect(await page.locator('table.sportello-inbox tbody tr').count() === 0, 'another comune sees the case');
  await check('pratiche-altro-comune');
  const answer = await page.goto(caseUrl);
  expect(answer.status() === 404, `another comune opens the case (${answer.status()})`);
  const theirs = await page.goto(`${base}${documentUrl}`);
  expect(theirs.status() === 404, `another comune downloads the document (${theirs.status()})`);

  // An administrator creates an account; its password is shown once, on that page.
  await page.goto(`${base}/ufficio`);
  await page.click('nav >> text=Esci');
  await signIn(page, admin, adminPassword);
  await page.click('nav >> text=Amministrazione');
  await page.fill('#username', 'nuova.collega');
  await page.fill('#name', 'Nuova Collega');
  await page.selectOption('#role', 'operator');
  await page.click('form[action$="crea-utente"] button[type=submit]');
  expect((await page.textContent('#segreto')).trim().length >= 20, 'no password shown for the new account');
  expect(await page.locator('th:text-is("nuova.collega")').count() === 1, 'the new account is not listed');
  await check('amministrazione');
  return { inbox_rows: listed };
});
