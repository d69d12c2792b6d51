// End-to-end test of the broker dashboard (www/src/dashboard) in Debian's Chromium, driven by
// playwright-core, against the real broker and its admin API: the walkthrough our users know
// (log in as admin / public, see a newly connected client and its subscription to topic_1
// appear, publish from another client and the first receives it), then the rest of the
// dashboard: kicking, subscribing on a client's behalf, publishing, retained messages, the
// password change, logging out and an expired token.
//
//   node --test tests/browser/        (scripts/test runs it as the `browser` step)
//
// It builds nothing: www/dist (trunk) and target/debug/bridge must exist. Screenshots go to
// tests/output/browser/dashboard-*.png. The broker, the browser and every MQTT client are
// stopped at the end, also on failure.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  OUT, WIDE, PHONE, startBridge, assertPrerequisites, launchPage,
} from './lib.mjs';
import mqtt from 'mqtt';

const NEW_PASSWORD = 'walkthrough-2026';

let bridge; // { proc, tcp, ws, http, log }
let context;
let page;
let userDataDir;
let dataDir;
const pageErrors = [];
// Every process and MQTT connection the test starts, so `after` can end them all.
const procs = new Set();
const mqttClients = new Set();
let loadTimer;
// The walkthrough's mosquitto_sub, kept running from one test to the next.
let walkthroughSub;

/// Starts a long-running command; `output()` is what it printed so far, `done` resolves
/// with its exit code.
function start(cmd, args) {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  procs.add(proc);
  let out = '';
  proc.stdout.on('data', (c) => (out += c));
  proc.stderr.on('data', (c) => (out += c));
  const done = new Promise((resolve) => {
    proc.on('exit', (code, signal) => {
      procs.delete(proc);
      resolve(code ?? signal);
    });
    proc.on('error', (e) => {
      procs.delete(proc);
      out += String(e);
      resolve('error');
    });
  });
  return { proc, done, output: () => out };
}

/// Runs a command to its end; resolves with { code, output }.
async function run(cmd, args, timeoutMs = 20_000) {
  const p = start(cmd, args);
  const timer = setTimeout(() => p.proc.kill('SIGKILL'), timeoutMs);
  const code = await p.done;
  clearTimeout(timer);
  return { code, output: p.output() };
}

/// Waits until `check()` is true (polling), or fails with `what`.
async function until(what, check, timeoutMs = 15_000) {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function mqttClient(options) {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${bridge.tcp}`, { reconnectPeriod: 0, ...options });
  mqttClients.add(client);
  return client;
}

async function screenshot(name) {
  await page.screenshot({ path: path.join(OUT, name) });
}

/// Chromium logs every non-2xx fetch as a console error; the 401s and 429s this test
/// provokes on purpose (wrong passwords, a revoked token, a throttled login) are expected,
/// nothing else is.
function unexpectedErrors() {
  return pageErrors.filter((e) => !/status of (401 \(Unauthorized\)|429 \(Too Many Requests\))/.test(e));
}

const nav = (name) => page.locator('.dash-nav').getByRole('link', { name, exact: true });
const clientRow = (id) => page.locator(`.clients-table tbody tr[data-clientid="${id}"]`);

before(async () => {
  assertPrerequisites();
  mkdirSync(OUT, { recursive: true });
  dataDir = mkdtempSync(path.join(tmpdir(), 'bridge-dashboard-data-'));
  bridge = await startBridge(dataDir);
  userDataDir = mkdtempSync(path.join(tmpdir(), 'bridge-dashboard-browser-'));
  ({ context, page } = await launchPage(userDataDir, pageErrors));
});

after(async () => {
  await page?.screenshot({ path: path.join(OUT, 'dashboard-last.png') }).catch(() => {});
  clearInterval(loadTimer);
  for (const client of mqttClients) client.end(true);
  for (const proc of procs) proc.kill('SIGKILL');
  await context?.close().catch(() => {});
  if (bridge) {
    bridge.proc.removeAllListeners('exit');
    bridge.proc.kill('SIGTERM');
    writeFileSync(path.join(OUT, 'dashboard-bridge.log'), bridge.log.join(''));
  }
  for (const dir of [userDataDir, dataDir]) if (dir) rmSync(dir, { recursive: true, force: true });
});

// Nothing the test started may outlive it, whatever happens.
process.on('exit', () => {
  bridge?.proc.kill('SIGKILL');
  for (const proc of procs) proc.kill('SIGKILL');
});

test('the Dashboard link leads to the login page, which shows the API\'s refusal', async () => {
  await page.goto(`http://127.0.0.1:${bridge.http}/`);
  await page.getByRole('link', { name: 'Dashboard', exact: true }).click();
  await page.locator('#login-username').waitFor();
  assert.equal(new URL(page.url()).pathname, '/dashboard');
  await page.locator('#login-username').fill('admin');
  await page.locator('#login-password').fill('not-the-password');
  await page.locator('#login-password').press('Enter');
  await page.locator('.login-error .error', { hasText: 'wrong username or password' }).waitFor();
  assert.equal(await page.locator('#login-password').inputValue(), '');
});

test('logs in as admin / public: the overview, with a nudge to change the password', async () => {
  await page.locator('#login-username').fill('admin');
  await page.locator('#login-password').fill('public');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.locator('.dash-title h1', { hasText: 'Overview' }).waitFor();
  await page.locator('.banner.warn', { hasText: 'default password' }).waitFor();
  // The counters come from /stats; the listeners from /broker.
  const connections = page.locator('.stat', { hasText: 'Connections' }).locator('.stat-value');
  await until('the connection counter', async () => /^\d+$/.test(await connections.innerText()));
  await page.locator('.listeners li', { hasText: `127.0.0.1:${bridge.tcp}` }).waitFor();
  assert.equal(await page.locator('.listeners li').count(), 3);
  // The login lasts for the tab: a reload stays logged in.
  await page.reload();
  await page.locator('.dash-title h1', { hasText: 'Overview' }).waitFor();
  assert.deepEqual(unexpectedErrors(), []);
});

test('a new client and its subscription to topic_1 appear; a publish reaches it', async () => {
  // Some traffic for the chart, and a persistent session whose client is away.
  const loadSub = await mqttClient({ clientId: 'chart-sub' });
  await loadSub.subscribeAsync('load/#');
  const loadPub = await mqttClient({ clientId: 'chart-pub' });
  let n = 0;
  loadTimer = setInterval(() => {
    for (let i = 0; i < 8; i++) loadPub.publish(`load/${i % 3}`, `sample ${n++}`);
  }, 200);
  const away = await mqttClient({ clientId: 'sensor-offline', clean: false });
  await away.subscribeAsync('sensors/+/temperature', { qos: 1 });
  await away.endAsync();
  mqttClients.delete(away);

  await nav('Clients').click();
  await page.locator('.dash-title h1', { hasText: 'Clients' }).waitFor();
  await clientRow('sensor-offline').locator('.pill[data-status="disconnected"]').waitFor();

  // The walkthrough's subscriber, started while the page is open: it appears without a reload.
  const sub = start('stdbuf', ['-oL', 'mosquitto_sub', '-h', '127.0.0.1', '-p', String(bridge.tcp),
    '-i', 'walkthrough-sub', '-t', 'topic_1', '-V', 'mqttv5']);
  const row = clientRow('walkthrough-sub');
  await row.locator('.pill[data-status="connected"]').waitFor();
  assert.match(await row.locator('td[data-label="Protocol"]').innerText(), /^MQTT 5\.0\s+tcp$/);
  assert.match(await row.locator('td[data-label="IP address"]').innerText(), /^127\.0\.0\.1:\d+$/);
  await until('its subscription count', async () =>
    (await row.locator('td[data-label="Subscriptions"]').innerText()).trim() === '1');

  // Its subscriptions, in the client's panel.
  await row.getByRole('button', { name: 'walkthrough-sub: details and subscriptions' }).click();
  const panel = page.locator('aside.panel');
  await panel.locator('.subs-table td', { hasText: 'topic_1' }).waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.id), 'panel-title');
  await page.keyboard.press('Escape');
  await panel.waitFor({ state: 'detached' });

  // And on the Subscriptions page, filtered by client id.
  await nav('Subscriptions').click();
  await page.locator('#subs-clientid').fill('walkthrough-sub');
  const subRow = page.locator('.table tbody tr', { hasText: 'walkthrough-sub' });
  await subRow.locator('td[data-label="Topic filter"]', { hasText: 'topic_1' }).waitFor();
  await until('the filter to apply', async () => (await page.locator('.table tbody tr').count()) === 1);

  // Another client publishes; the first one prints it.
  const pub = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(bridge.tcp), '-t', 'topic_1',
    '-m', 'hello-walkthrough']);
  assert.equal(pub.code, 0, pub.output);
  await until('mosquitto_sub to print the message', () => sub.output().includes('hello-walkthrough'));

  // The topic is listed with its subscriber.
  await nav('Topics').click();
  const topicRow = page.locator('.table tbody tr', { hasText: 'topic_1' });
  assert.equal(await topicRow.locator('td[data-label="Subscribers"]').innerText(), '1');
  walkthroughSub = sub;
  assert.deepEqual(unexpectedErrors(), []);
});

test('screenshots: the overview with its chart, and the clients', async () => {
  await nav('Overview').click();
  // Some history points (one every 2 s) with the load running.
  await until('a chart with a line', async () =>
    ((await page.locator('.chart .series-in .line').getAttribute('d')) ?? '').split('L').length >= 8, 30_000);
  const received = page.locator('.stat', { hasText: 'Received' }).locator('.stat-value');
  await until('messages counted', async () => Number((await received.innerText()).replace(/,/g, '')) > 20);
  // The readout follows the pointer.
  const plot = page.locator('.chart-plot');
  const box = await plot.boundingBox();
  await page.mouse.move(box.x + box.width - 30, box.y + box.height / 2);
  await page.locator('.chart-tip', { hasText: 'Received' }).waitFor();
  await screenshot('dashboard-1280-overview.png');
  await page.mouse.move(0, 0);

  await nav('Clients').click();
  await clientRow('walkthrough-sub').waitFor();
  await screenshot('dashboard-1280-clients.png');
  await page.emulateMedia({ colorScheme: 'dark' });
  await screenshot('dashboard-1280-clients-dark.png');
  await page.emulateMedia({ colorScheme: 'light' });
  await page.setViewportSize(PHONE);
  await screenshot('dashboard-390-clients.png');
  await nav('Overview').click();
  await page.locator('.chart .series-in .line').waitFor();
  await screenshot('dashboard-390-overview.png');
  await page.setViewportSize(WIDE);
  assert.deepEqual(unexpectedErrors(), []);
});

test('subscribes a client on its behalf, then kicks it', async () => {
  const sub = walkthroughSub;
  await nav('Clients').click();
  await page.locator('#clients-search').fill('walkthrough');
  await until('the search to apply', async () => (await page.locator('.clients-table tbody tr').count()) === 1);
  const row = clientRow('walkthrough-sub');
  await row.getByRole('button', { name: 'walkthrough-sub: details and subscriptions' }).click();
  const panel = page.locator('aside.panel');
  await panel.locator('#panel-sub-topic').fill('topic_2');
  await panel.locator('#panel-sub-qos').selectOption('1');
  await panel.locator('#panel-sub-topic').press('Enter');
  await panel.locator('.flash.ok', { hasText: 'Subscribed walkthrough-sub to topic_2 (QoS 1).' }).waitFor();
  await panel.locator('.subs-table td', { hasText: 'topic_2' }).waitFor();
  await screenshot('dashboard-1280-client-panel.png');
  const pub = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(bridge.tcp), '-t', 'topic_2',
    '-m', 'subscribed-by-the-dashboard']);
  assert.equal(pub.code, 0, pub.output);
  await until('mosquitto_sub to get topic_2', () => sub.output().includes('subscribed-by-the-dashboard'));
  await panel.getByRole('button', { name: 'Close the client panel' }).click();

  // Kick: the button asks first; Cancel leaves the client alone.
  await row.getByRole('button', { name: 'Kick walkthrough-sub' }).click();
  await row.locator('.confirm-question', { hasText: 'Disconnect walkthrough-sub?' }).waitFor();
  await row.getByRole('button', { name: 'Cancel' }).click();
  await row.getByRole('button', { name: 'Kick walkthrough-sub' }).click();
  // The confirming button has the focus: Enter kicks.
  await page.keyboard.press('Enter');
  await page.locator('.flash.ok', { hasText: 'Kicked walkthrough-sub.' }).waitFor();
  // mosquitto_sub (MQTT 5.0) exits when the broker disconnects it.
  const code = await Promise.race([sub.done, new Promise((r) => setTimeout(() => r('still running'), 10_000))]);
  assert.notEqual(code, 'still running', 'mosquitto_sub kept running after the kick');
  // Its session was clean: the row goes (a persistent one would turn "Disconnected").
  await until('the row to go or turn disconnected', async () =>
    (await row.count()) === 0 || (await row.locator('.pill[data-status="disconnected"]').count()) === 1);
  await page.locator('#clients-search').fill('');

  // Ending the away client's session removes it from the list.
  const away = clientRow('sensor-offline');
  await away.getByRole('button', { name: 'End the session of sensor-offline' }).click();
  await away.getByRole('button', { name: 'End session', exact: true }).click();
  await page.locator('.flash.ok', { hasText: 'Ended the session of sensor-offline.' }).waitFor();
  await away.waitFor({ state: 'detached' });
  assert.deepEqual(unexpectedErrors(), []);
});

test('a 5.0 subscription shows its options; "Filter contains" finds it', async () => {
  // MQTT.js, a 5.0 client nobody here wrote, subscribes with every option set.
  const client = await mqttClient({ clientId: 'options-v5', protocolVersion: 5 });
  await client.subscribeAsync('fleet/+/alerts', {
    qos: 1, nl: true, rap: true, rh: 2, properties: { subscriptionIdentifier: 7 },
  });
  await client.subscribeAsync('fleet/plain', { qos: 0 });
  await nav('Subscriptions').click();
  await page.locator('#subs-like').fill('fleet/');
  await until('the contains filter to apply', async () => (await page.locator('.table tbody tr').count()) === 2);
  const row = (topic) => page.locator('.table tbody tr', { has: page.locator('td[data-label="Topic filter"]', { hasText: topic }) });
  assert.equal(await row('fleet/+/alerts').locator('td[data-label="Options"]').innerText(),
    'No Local, Retain as Published, Retained: never, ID 7');
  assert.equal(await row('fleet/plain').locator('td[data-label="Options"]').innerText(), '–');
  await page.locator('#subs-like').fill('alerts');
  await until('only the alerts filter to stay', async () => (await page.locator('.table tbody tr').count()) === 1);
  await screenshot('dashboard-1280-subscription-options.png');
  await page.getByRole('button', { name: 'Clear filters' }).click();
  await client.endAsync();
  mqttClients.delete(client);
  assert.deepEqual(unexpectedErrors(), []);
});

test('publishes a retained message, views it as text and hex, deletes it', async () => {
  await nav('Publish').click();
  await page.locator('#dash-pub-topic').fill('dashboard/greeting');
  await page.locator('#dash-pub-payload').fill('Hello, retained');
  await page.locator('#dash-pub-qos').selectOption('1');
  await page.locator('#dash-pub-retain').check();
  await page.locator('#dash-pub-payload').press('Control+Enter');
  await page.locator('.flash.ok', { hasText: 'Published to dashboard/greeting (retained): delivered to 0 subscriptions.' }).waitFor();

  await nav('Retained').click();
  await page.locator('#retained-search').fill('greeting');
  const row = page.locator('.table tbody tr', { hasText: 'dashboard/greeting' });
  await row.locator('td[data-label="Payload"]', { hasText: 'Hello, retained' }).waitFor();
  assert.equal(await row.locator('td[data-label="QoS"]').innerText(), '1');
  await row.getByRole('button', { name: 'View dashboard/greeting' }).click();
  const viewer = page.locator('.viewer');
  await viewer.locator('.viewer-payload', { hasText: 'Hello, retained' }).waitFor();
  await viewer.getByRole('button', { name: 'Hex' }).click();
  await viewer.locator('.viewer-payload', { hasText: '48 65 6c 6c 6f 2c 20 72' }).waitFor();
  await screenshot('dashboard-1280-retained.png');
  await row.getByRole('button', { name: 'Delete the retained message of dashboard/greeting' }).click();
  await row.getByRole('button', { name: 'Delete', exact: true }).click();
  await page.locator('.flash.ok', { hasText: 'Deleted the retained message of dashboard/greeting.' }).waitFor();
  await row.waitFor({ state: 'detached' });
  await viewer.waitFor({ state: 'detached' });
  assert.deepEqual(unexpectedErrors(), []);
});

test('changes the default password; logs out; logs in with the new one', async () => {
  await page.locator('.banner.warn').getByRole('button', { name: 'Change password' }).click();
  await page.locator('#pw-old').fill('public');
  await page.locator('#pw-new').fill('short');
  await page.locator('#pw-confirm').fill('shorter');
  await page.locator('#pw-confirm').press('Enter');
  await page.locator('#pw-new-error', { hasText: 'At least 8 characters.' }).waitFor();
  await page.locator('#pw-confirm-error', { hasText: 'The two new passwords differ.' }).waitFor();
  await page.locator('#pw-new').fill(NEW_PASSWORD);
  await page.locator('#pw-confirm').fill(NEW_PASSWORD);
  await page.getByRole('button', { name: 'Change password', exact: true }).last().click();
  await page.locator('.password-card').waitFor({ state: 'detached' });
  await page.locator('.flash.ok', { hasText: 'Password changed.' }).waitFor();
  assert.equal(await page.locator('.banner.warn').count(), 0);

  await page.getByRole('button', { name: 'Log out' }).click();
  await page.locator('.login .notice', { hasText: 'You have logged out.' }).waitFor();
  await page.locator('#login-username').fill('admin');
  await page.locator('#login-password').fill(NEW_PASSWORD);
  await page.locator('#login-password').press('Enter');
  await page.locator('.dash-title h1').waitFor();
  assert.equal(await page.locator('.banner.warn').count(), 0);
  assert.deepEqual(unexpectedErrors(), []);
});

test('a token the broker no longer knows leads back to the login page', async () => {
  await nav('Clients').click();
  await page.evaluate(() => {
    const key = 'bridge.dashboard.login';
    const login = JSON.parse(sessionStorage.getItem(key));
    sessionStorage.setItem(key, JSON.stringify({ ...login, token: 'revoked' }));
  });
  await page.reload();
  await page.locator('.login .notice', { hasText: 'Your session has ended' }).waitFor();
  // The page stays usable: log in again, land on the page in the URL.
  await page.locator('#login-username').fill('admin');
  await page.locator('#login-password').fill(NEW_PASSWORD);
  await page.locator('#login-password').press('Enter');
  await page.locator('.dash-title h1', { hasText: 'Clients' }).waitFor();
  await screenshot('dashboard-1280-clients-after.png');
  assert.deepEqual(unexpectedErrors(), []);
});

test('repeated wrong passwords are throttled: the wait is shown, then login works again', async () => {
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.locator('#login-username').fill('admin');
  // The broker lets three failures through, then blocks the address for 2 s, then 4 s…
  for (let i = 1; i <= 3; i++) {
    await page.locator('#login-password').fill(`wrong-${i}`);
    await page.locator('#login-password').press('Enter');
    await page.locator('.login-error .error', { hasText: 'wrong username or password' }).waitFor();
    await page.locator('.login-submit:not([disabled])').waitFor();
  }
  await page.locator('#login-password').fill(NEW_PASSWORD);
  await page.locator('#login-password').press('Enter');
  const error = page.locator('.login-error .error', { hasText: 'Too many failed logins.' });
  await error.waitFor();
  assert.match(await error.innerText(), /Try again in \d+ s\./);
  assert.match(await page.locator('.login-submit').innerText(), /^Wait \d+ s$/);
  assert.equal(await page.locator('.login-submit').isDisabled(), true);
  await screenshot('dashboard-1280-login-throttled.png');
  // The countdown ends by itself; then the right password gets in.
  await page.locator('.login-submit', { hasText: 'Log in' }).waitFor({ timeout: 20_000 });
  await page.locator('#login-password').fill(NEW_PASSWORD);
  await page.locator('#login-password').press('Enter');
  await page.locator('.dash-title h1').waitFor();
  assert.deepEqual(unexpectedErrors(), []);
});

test('a misspelled ACL access word is shown on the overview, naming the file and line', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'bridge-dashboard-acl-'));
  const acl = path.join(dir, 'acl');
  writeFileSync(acl, 'topic readwrite #\ntopic dney secret/#\n');
  const config = path.join(dir, 'bridge.toml');
  writeFileSync(config, `[auth]\nacl_file = ${JSON.stringify(acl)}\n`);
  const other = await startBridge(path.join(dir, 'data'), ['--config', config]);
  try {
    await page.goto(`http://127.0.0.1:${other.http}/dashboard`);
    await page.locator('#login-username').fill('admin');
    await page.locator('#login-password').fill('public');
    await page.getByRole('button', { name: 'Log in' }).click();
    const banner = page.locator('.banner.config-warning');
    await banner.waitFor();
    const text = await banner.innerText();
    assert.match(text, new RegExp(`ACL file ${acl.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}, line 2`));
    assert.match(text, /did you mean `deny`/);
    await screenshot('dashboard-1280-config-warning.png');
  } finally {
    other.proc.removeAllListeners('exit');
    other.proc.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
});
