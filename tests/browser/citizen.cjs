// A citizen's visit in a real browser: the pages they read, a contact form sent with errors and
// then right, the case followed with its code and key (with the keyboard alone); the first load's
// weight is measured.
// harness.cjs checks every page with axe-core and fails on any console error.

const path = require('path');
const { visit, expect } = require('./harness.cjs');

visit(async ({ base, page, check, every, shots }) => {
  let weight = 0;
  page.on('requestfinished', async (r) => {
    const sizes = await r.sizes().catch(() => null);
    if (sizes) weight += sizes.responseBodySize + sizes.responseHeadersSize;
  });
  // Home, first load with an empty cache: its weight as sent over the wire.
  await page.goto(`${base}/`, { waitUntil: 'networkidle' });
  expect((await page.textContent('h1')).includes('Ufficio Relazioni con il Pubblico'), 'home: no title');
  const firstLoad = weight;
  await check('home');

  await page.click('nav[aria-label="Navigazione principale"] >> text=Servizi');
  expect(await page.locator('article').count() > 0, 'servizi: no service listed');
  await check('servizi');
  await page.locator('article h2 a').first().click();
  expect(await page.locator('text=Cosa serve').count() === 1, 'a service page without "Cosa serve"');
  await check('servizio');

  // The page rated: four stars, then what worked, then thanks.
  expect(await page.locator('[data-element="feedback"]').count() === 1, 'a service page without the rating box');
  await page.click('label[for=stella-4]');
  await page.click('[data-element="feedback"] button[type=submit]');
  expect((await page.textContent('legend')).includes('aspetti che hai preferito'), 'four stars do not ask what worked');
  await check('valutazione');
  await page.click('label[for=motivo-indicazioni_chiare]');
  await page.fill('#comment', 'Tutto chiaro, grazie.');
  await page.click('form.sportello-form button[type=submit]');
  expect((await page.textContent('h1')).includes('Grazie'), 'no thanks after rating');

  // A published form of the service: sent empty, every error beside its field; then filled.
  await page.click('text=Torna alla pagina precedente');
  await page.locator('a[href^="/moduli/"]').first().click();
  await check('modulo');
  await page.click('form.sportello-form button[type=submit]');
  expect(await page.locator('#riepilogo-errori').isVisible(), 'a form sent empty shows no errors');
  const required = await page.locator('label:has-text("(obbligatorio)")[for^=campo_]').count();
  const beside = await page.locator('[id^=campo_][id$=-errore]').count();
  expect(required > 0 && beside === required, `${beside} errors beside ${required} required fields`);
  await check('modulo-errori');
  await page.selectOption('#comune', { index: 1 });
  for (const input of await page.locator('[name^=campo_]').all()) {
    const tag = await input.evaluate((e) => e.tagName.toLowerCase());
    const type = await input.getAttribute('type');
    if (tag === 'select') await input.selectOption({ index: 1 });
    else if (type === 'checkbox') await page.click(`label[for="${await input.getAttribute('id')}"]`, { position: { x: 8, y: 8 } });
    else if (type === 'email') await input.fill('cittadina@example.it');
    else if (type === 'tel') await input.fill('333 1234567');
    else if (type === 'date') await input.fill('2026-01-15');
    else if (type === 'number') await input.fill((await input.getAttribute('min')) || '1');
    else await input.fill('Prova');
  }
  // Bootstrap Italia draws its own checkboxes: a person clicks the label.
  for (const box of await page.locator('[name^=documento_]').all()) {
    await page.click(`label[for="${await box.getAttribute('id')}"]`, { position: { x: 8, y: 8 } });
  }
  await page.click('label[for=privacy_consent-box]', { position: { x: 8, y: 8 } });
  await page.click('form.sportello-form button[type=submit]');
  expect(/^\d+$/.test((await page.textContent('#numero-domanda')).trim()), 'no registration number after sending the form');
  await check('modulo-inviato');

  // The form sent empty: every error next to its field, and a summary that links to them.
  await page.goto(`${base}/contatti/nuovo`);
  await check('contatto');
  await page.click('button[type=submit]');
  expect((await page.title()).startsWith('Errore'), 'the page with errors does not say so in its title');
  for (const field of ['comune', 'kind', 'subject', 'privacy_consent']) {
    expect(await page.locator(`#${field}-errore`).isVisible(), `no error shown next to ${field}`);
  }
  expect(await page.getAttribute('#subject', 'aria-invalid') === 'true', 'subject not marked invalid');
  await check('contatto-errori');
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
  await check('contatto-inviato');

  // Followed with a wrong key, then the right one.
  await page.click('text=Segui la tua pratica >> nth=-1');
  await page.fill('#code', code);
  await page.fill('#key', 'chiave-sbagliata');
  await page.click('button[type=submit]');
  expect(await page.locator('.alert-danger').isVisible(), 'a wrong key shows no error');
  await check('pratica-non-trovata');
  // The right key, with the keyboard alone: the first Tab reaches the skip link, which leads to
  // the form; its fields come in order, each with a visible focus, and Enter sends it.
  await page.goto(`${base}/pratiche`);
  const focused = () => page.evaluate(() => {
    const e = document.activeElement;
    const style = getComputedStyle(e);
    return { id: e.id, text: e.textContent.trim(),
      ring: style.outlineStyle !== 'none' || style.boxShadow !== 'none' };
  });
  await page.keyboard.press('Tab');
  const skip = await focused();
  expect(skip.text === 'Vai al contenuto principale' && skip.ring, `the first Tab reaches ${JSON.stringify(skip)}`);
  await page.keyboard.press('Enter');
  for (const [id, text] of [['code', code.toLowerCase()], ['key', key]]) {
    await page.keyboard.press('Tab');
    const field = await focused();
    expect(field.id === id && field.ring, `Tab reaches ${JSON.stringify(field)} instead of #${id} with a visible focus`);
    await page.keyboard.type(text);
  }
  await page.keyboard.press('Enter');
  await page.waitForSelector('#stato-pratica');
  expect((await page.textContent('#stato-pratica')).trim() === 'Ricevuta', 'the case is not shown as received');
  expect(!page.url().includes(key), 'the key is in the URL');
  await check('pratica');

  // Withdrawn by the citizen, who confirms it first.
  await page.click('summary:text("Ritira la richiesta")');
  await page.click('label[for=confirm]', { position: { x: 8, y: 8 } });
  await page.click('form[action="/pratiche/ritiro"] button[type=submit]');
  expect(await page.locator('#fatto').isVisible(), 'no confirmation of the withdrawal');
  expect((await page.textContent('#stato-pratica')).trim() === 'Ritirata', 'the case is not withdrawn');
  expect(!page.url().includes(key), 'the key is in the URL');
  await check('pratica-ritirata');

  await page.goto(`${base}/privacy`);
  await check('privacy');
  await page.goto(`${base}/pagina-che-non-esiste`);
  await check('pagina-non-trovata');

  return { first_load_bytes: firstLoad };
});
