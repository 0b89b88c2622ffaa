// What the Puppeteer clients (CDP and WebDriver BiDi) do alike on the fixture site: sign in,
// scrape, and complete the OAuth popup. Printed as the other clients print it.
'use strict';

async function signInAndAuthorize(page, site, print) {
  await page.goto(`${site}/login.html`);
  await page.type('#user', 'ada');
  await page.type('#password', 'secret');
  await Promise.all([page.waitForNavigation(), page.click('#submit')]);
  const text = (selector) => page.$eval(selector, (e) => e.textContent);
  print('login', { who: await text('#who'), stored: await text('#stored') });

  await page.goto(`${site}/app.html`);
  const opened = new Promise((resolve) => page.once('popup', resolve));
  await page.click('#oauth');
  const popup = await opened;
  await popup.waitForSelector('#approve');
  print('popup', { url: popup.url(), title: await popup.title() });
  // The popup closes itself as it is clicked: it may go before the click returns (CDP says
  // TargetCloseError, BiDi that the context is gone).
  await popup.click('#approve').catch((error) => {
    if (error.name !== 'TargetCloseError' && !/closed|detached|no such frame/i.test(String(error)))
      throw error;
  });
  await page.waitForFunction(() =>
    document.getElementById('status').textContent.startsWith('connected'),
  );
  print('status', { text: await text('#status') });
}

module.exports = { signInAndAuthorize };
