// End-to-end test of the web app's MQTT client: Debian's Chromium (driven by playwright-core)
// opens the app served by the real broker, connects over MQTT-over-WebSocket, and exchanges
// messages with mosquitto_pub / mosquitto_sub over TCP.
//
//   node --test tests/browser/        (scripts/test runs it as the `browser` step)
//
// It builds nothing: www/dist (trunk) and target/debug/bridge must exist. Screenshots go to
// tests/output/browser/. The broker and the browser are stopped at the end, also on failure.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  OUT, WIDE, PHONE, startBridge, assertPrerequisites, launchPage,
} from './lib.mjs';
import mqtt from 'mqtt';

let bridge; // { proc, tcp, ws, http, log }
let context; // the persistent browser context (its own fresh --user-data-dir)
let page;
let userDataDir;
let dataDir; // the broker's store, a fresh folder removed at the end
const pageErrors = [];

/// Runs a command to its end; resolves with { code, stdout, stderr }.
function run(cmd, args, { timeoutMs = 30_000 } = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    proc.stdout.on('data', (c) => (stdout += c));
    proc.stderr.on('data', (c) => (stderr += c));
    proc.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/// Starts `mosquitto_sub -d` and resolves once the broker acknowledged its SUBSCRIBE, so a
/// publish made afterwards cannot be missed; `done` resolves when it exits.
function subscribeWithMosquitto(topic) {
  return new Promise((resolve, reject) => {
    // stdbuf: mosquitto_sub block-buffers its output into a pipe, hiding the SUBACK line.
    const proc = spawn(
      'stdbuf',
      ['-oL', 'mosquitto_sub', '-d', '-h', '127.0.0.1', '-p', String(bridge.tcp), '-t', topic,
        '-C', '1', '-W', '20'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    let subscribed = false;
    const done = new Promise((res) => proc.on('exit', (code) => res({ code, stdout, stderr })));
    proc.stdout.on('data', (c) => {
      stdout += c;
      if (!subscribed && stdout.includes('received SUBACK')) {
        subscribed = true;
        resolve({ proc, done });
      }
    });
    proc.stderr.on('data', (c) => (stderr += c));
    proc.on('error', reject);
    done.then(({ code }) => {
      if (!subscribed) reject(new Error(`mosquitto_sub exited (${code}) before subscribing:\n${stdout}${stderr}`));
    });
  });
}

/// A loopback port nothing listens on (bound, then released).
function closedPort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function screenshot(name) {
  const file = path.join(OUT, name);
  await page.screenshot({ path: file });
  return file;
}

before(async () => {
  assertPrerequisites();
  mkdirSync(OUT, { recursive: true });
  dataDir = mkdtempSync(path.join(tmpdir(), 'bridge-client-data-'));
  bridge = await startBridge(dataDir);
  userDataDir = mkdtempSync(path.join(tmpdir(), 'bridge-browser-'));
  ({ context, page } = await launchPage(userDataDir, pageErrors));
});

after(async () => {
  // What the page looked like at the end: the first thing to look at when a step failed.
  await page?.screenshot({ path: path.join(OUT, 'last.png') }).catch(() => {});
  await context?.close().catch(() => {});
  if (bridge) {
    bridge.proc.removeAllListeners('exit');
    bridge.proc.kill('SIGTERM');
    writeFileSync(path.join(OUT, 'bridge.log'), bridge.log.join(''));
  }
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

// The broker must not outlive the test run, whatever happens.
process.on('exit', () => bridge?.proc.kill('SIGKILL'));

test('the app loads with a profile for this broker', async () => {
  await page.goto(`http://127.0.0.1:${bridge.http}/`);
  await page.locator('.sidebar .profile').first().waitFor();
  assert.equal(await page.locator('.sidebar .profile').count(), 1);
  // The first profile points at the page's host, on the default WebSocket port.
  assert.equal(await page.locator('#conn-url').inputValue(), 'ws://127.0.0.1:8083/mqtt');
  assert.equal(await page.locator('.bar .pill').getAttribute('data-status'), 'idle');
});

test('the connection form explains what is wrong', async () => {
  await page.getByRole('button', { name: 'New connection' }).click();
  assert.equal(await page.locator('.sidebar .profile').count(), 2);
  await page.locator('#conn-url').fill('mqtt://127.0.0.1:1883');
  await page.locator('#conn-keepalive').fill('70000');
  await page.locator('#conn-url').press('Enter'); // Enter submits the form
  await page.locator('#conn-url-error').waitFor();
  assert.match(await page.locator('#conn-url-error').innerText(), /WebSocket URL/);
  assert.match(await page.locator('#conn-keepalive-error').innerText(), /65535/);
  await screenshot('client-1280-validation.png');
});

test('connects, receives from mosquitto_pub, publishes to mosquitto_sub', async () => {
  await page.locator('#conn-name').fill('e2e broker');
  await page.locator('#conn-url').fill(`ws://127.0.0.1:${bridge.ws}/mqtt`);
  await page.locator('#conn-keepalive').fill('30');
  await page.getByRole('button', { name: 'Save & connect' }).click();
  await page.locator('.bar .pill[data-status="connected"]').waitFor();
  assert.equal(await page.locator('.bar h1').innerText(), 'e2e broker');
  assert.equal(await page.locator('.sidebar .profile.active .dot.connected').count(), 1);

  // Subscribe (Enter submits); the broker's SUBACK shows in the list.
  await page.getByRole('tab', { name: /Subscriptions/ }).click();
  await page.locator('#sub-filter').fill('topic_1');
  await page.locator('#sub-filter').press('Enter');
  const sub = page.locator('.subs li', { hasText: 'topic_1' });
  await sub.locator('.sub-state', { hasText: 'subscribed' }).waitFor();

  // A device publishes over TCP; the page shows it, in the subscription's colour.
  const pub = await run('mosquitto_pub', [
    '-h', '127.0.0.1', '-p', String(bridge.tcp), '-t', 'topic_1', '-m', 'hello-from-device',
  ]);
  assert.equal(pub.code, 0, `mosquitto_pub failed: ${pub.stderr}`);
  await page.getByRole('tab', { name: /Messages/ }).click();
  const received = page.locator('.messages .msg.in', { hasText: 'hello-from-device' });
  await received.waitFor();
  assert.equal(await received.locator('.topic').innerText(), 'topic_1');
  assert.match(await received.getAttribute('class'), /\bc0\b/);

  // The page publishes (Ctrl+Enter in the payload); mosquitto_sub receives it over TCP.
  const { done } = await subscribeWithMosquitto('topic_2');
  await page.getByRole('tab', { name: 'Publish' }).click();
  await page.locator('#pub-topic').fill('topic_2');
  await page.locator('#pub-payload').fill('hello-from-browser');
  await page.locator('#pub-payload').press('Control+Enter');
  const got = await done;
  assert.equal(got.code, 0, `mosquitto_sub: ${got.stdout}${got.stderr}`);
  assert.match(got.stdout, /hello-from-browser/);
  await page.locator('.pane-publish .form-status .ok', { hasText: 'Published' }).waitFor();
  await page.locator('.messages .msg.out', { hasText: 'hello-from-browser' }).waitFor();

  // A few more messages, so the screenshots show a list (one JSON for the formats).
  const json = JSON.stringify({ temperature: 21.5, unit: 'C', sensor: 'lab-1' });
  await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(bridge.tcp), '-t', 'topic_1', '-m', json]);
  await page.locator('.messages .msg.in', { hasText: 'temperature' }).waitFor();
  await page.getByRole('tab', { name: /Messages/ }).click();
  assert.match(await page.locator('.pane-messages .count').innerText(), /^3 messages/);
  assert.deepEqual(pageErrors, []);
});

test('the message list filters by topic and shows payload formats', async () => {
  await page.locator('#msg-filter').fill('+');
  assert.match(await page.locator('.pane-messages .count').innerText(), /^3 messages/);
  await page.locator('#msg-filter').fill('_2');
  await page.locator('.pane-messages .count', { hasText: '1 of 3 messages match' }).waitFor();
  await page.locator('#msg-filter').fill('');
  await page.locator('#msg-format').selectOption('hex');
  await page.locator('.messages .msg.in .payload', { hasText: '68 65 6c 6c 6f 2d 66 72' }).waitFor();
  await page.locator('#msg-format').selectOption('json');
  await page.locator('.messages .msg.in .payload', { hasText: '"temperature": 21.5' }).waitFor();
});

test('the pane tabs follow the arrow keys', async () => {
  await page.getByRole('tab', { name: /Messages/ }).focus();
  await page.keyboard.press('ArrowRight');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'tab-publish');
  assert.equal(await page.getByRole('tab', { name: 'Publish' }).getAttribute('aria-selected'), 'true');
  await page.keyboard.press('ArrowLeft');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'tab-messages');
  assert.equal(await page.getByRole('tab', { name: /Messages/ }).getAttribute('aria-selected'), 'true');
});

test('screenshots at 1280x800 and at phone width', async () => {
  await page.setViewportSize(WIDE);
  await screenshot('client-1280.png');
  await page.emulateMedia({ colorScheme: 'dark' });
  await screenshot('client-1280-dark.png');
  await page.emulateMedia({ colorScheme: 'light' });
  await page.setViewportSize(PHONE);
  await screenshot('client-390-messages.png');
  await page.getByRole('tab', { name: 'Connection' }).click();
  await screenshot('client-390-connection.png');
  await page.setViewportSize(WIDE);
  // The Dashboard route opens the broker console (its login first); the client stays up.
  await page.getByRole('link', { name: 'Dashboard' }).click();
  await page.locator('#login-username').waitFor();
  assert.equal(new URL(page.url()).pathname, '/dashboard');
  await page.getByRole('link', { name: 'About' }).click();
  await page.locator('h1.page-title').waitFor();
  await screenshot('about-1280.png');
  // Back on the client page the connection is still up.
  await page.getByRole('link', { name: 'Client', exact: true }).click();
  await page.locator('.bar .pill[data-status="connected"]').waitFor();
  assert.deepEqual(pageErrors, []);
});

test('stays responsive while thousands of messages a second arrive', async (t) => {
  const FLOOD = 12_000;
  await page.getByRole('tab', { name: /Messages/ }).click();
  await page.locator('#msg-format').selectOption('text');
  const device = await mqtt.connectAsync(`mqtt://127.0.0.1:${bridge.tcp}`, { clientId: 'flood' });
  const started = Date.now();
  // About 4,000 a second: 100 every 25 ms. (Much faster and the broker's per-session
  // queue, 1,000 messages, overflows and drops QoS 0 messages for the page.)
  const sent = (async () => {
    for (let i = 0; i < FLOOD; i++) {
      device.publish('topic_1', `flood ${i} ${'x'.repeat(64)}`);
      if (i % 100 === 99) await new Promise((r) => setTimeout(r, 25));
    }
    await device.endAsync(); // flushes what is queued
  })();
  // While the flood arrives, the page answers quickly: time a few round trips through it.
  let worst = 0;
  while (Date.now() - started < 3000) {
    const t0 = Date.now();
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r())));
    worst = Math.max(worst, Date.now() - t0);
    await new Promise((r) => setTimeout(r, 50));
  }
  await sent;
  await page.locator('.messages .msg').first().filter({ hasText: `flood ${FLOOD - 1} ` })
    .waitFor({ timeout: 30_000 });
  const seconds = (Date.now() - started) / 1000;
  // The history keeps the newest 5,000 and counts the rest as dropped.
  const count = await page.locator('.pane-messages .count').innerText();
  t.diagnostic(`${FLOOD} messages in ${seconds.toFixed(1)} s (${count}); slowest frame while flooded ${worst} ms`);
  assert.match(count, /^5,000 messages · newest 300 shown · [\d,]+ older dropped \(keeps 5,000\)$/);
  assert.ok(worst < 2000, `the page froze for ${worst} ms`);
  assert.equal(await page.locator('.messages .msg').count(), 300);
  await screenshot('client-1280-flood.png');
  await page.getByRole('button', { name: 'Clear' }).click();
  await page.locator('.pane-messages .count', { hasText: /^0 messages/ }).waitFor();
  assert.deepEqual(pageErrors, []);
});

test('disconnects', async () => {
  await page.getByRole('button', { name: 'Disconnect', exact: true }).click();
  await page.locator('.bar .pill[data-status="idle"]', { hasText: 'Disconnected' }).waitFor();
  assert.deepEqual(pageErrors, []);
});

test('MQTT 5.0: session expiry, subscription options, publish properties', async () => {
  await page.getByRole('button', { name: 'New connection' }).click();
  await page.locator('#conn-name').fill('mqtt 5 broker');
  await page.locator('#conn-url').fill(`ws://127.0.0.1:${bridge.ws}/mqtt`);
  assert.equal(await page.locator('#conn-session-expiry').count(), 0, '5.0 fields hidden for 3.1.1');
  await page.locator('#conn-protocol').selectOption('5.0');
  await page.locator('#conn-session-expiry').fill('300');
  await page.getByRole('button', { name: 'Save & connect' }).click();
  await page.locator('.bar .pill[data-status="connected"]').waitFor();

  // No local: what the page publishes on v5/nolocal does not come back to it.
  await page.getByRole('tab', { name: /Subscriptions/ }).click();
  await page.locator('#sub-filter').fill('v5/nolocal');
  await page.locator('#sub-no-local').check();
  await page.locator('#sub-filter').press('Enter');
  const noLocal = page.locator('.subs li', { hasText: 'v5/nolocal' });
  await noLocal.locator('.sub-state', { hasText: 'subscribed' }).waitFor();
  assert.equal(await noLocal.locator('.tag', { hasText: 'no local' }).count(), 1);
  await page.getByRole('tab', { name: 'Publish' }).click();
  await page.locator('#pub-topic').fill('v5/nolocal');
  await page.locator('#pub-payload').fill('not for me');
  await page.getByRole('button', { name: 'Publish', exact: true }).click();
  await page.locator('.messages .msg.out', { hasText: 'not for me' }).waitFor();

  await page.getByRole('tab', { name: /Subscriptions/ }).click();
  await page.locator('#sub-filter').fill('v5/props');
  await page.locator('#sub-no-local').uncheck();
  await page.locator('#sub-filter').press('Enter');
  await page.locator('.subs li', { hasText: 'v5/props' }).locator('.sub-state', { hasText: 'subscribed' }).waitFor();

  // Publish with a content type and a user property; they come back on the message.
  await page.getByRole('tab', { name: 'Publish' }).click();
  await page.locator('#pub-topic').fill('v5/props');
  await page.locator('#pub-format').selectOption('json');
  await page.locator('#pub-payload').fill('{"hello": 5}');
  await page.getByText('MQTT 5.0 properties').click(); // unfolds them
  await page.locator('#pub-content-type').fill('application/json');
  await page.getByRole('button', { name: '+ Add user property' }).click();
  await page.locator('#pub-up-key-0').fill('origin');
  await page.locator('#pub-up-value-0').fill('browser');
  await page.getByRole('button', { name: 'Publish', exact: true }).click();
  const echoed = page.locator('.messages .msg.in', { hasText: '{"hello": 5}' });
  await echoed.waitFor();
  assert.equal(await echoed.locator('.tag', { hasText: 'content-type: application/json' }).count(), 1);
  assert.equal(await echoed.locator('.tag', { hasText: 'origin: browser' }).count(), 1);
  // One connection delivers in order: had "not for me" come back, it would be here by now.
  assert.equal(await page.locator('.messages .msg.in').count(), 1);
  await screenshot('client-1280-v5.png');
  await page.getByRole('button', { name: 'Disconnect', exact: true }).click();
  await page.locator('.bar .pill[data-status="idle"]').waitFor();
  assert.deepEqual(pageErrors, []);
});

test('a lost connection shows why and when it retries', async () => {
  await page.getByRole('button', { name: 'New connection' }).click();
  await page.locator('#conn-name').fill('nobody home');
  // Nothing listens there: the WebSocket fails at once.
  const port = await closedPort();
  await page.locator('#conn-url').fill(`ws://127.0.0.1:${port}/mqtt`);
  await page.getByRole('button', { name: 'Save & connect' }).click();
  const detail = page.locator('.status-detail.reconnecting');
  await detail.waitFor();
  assert.equal(await page.locator('.bar .pill').getAttribute('data-status'), 'reconnecting');
  assert.match(await detail.innerText(), /^Connection lost: .+\. Retrying in \d/);
  await screenshot('client-1280-reconnecting.png');
  await page.getByRole('button', { name: 'Disconnect', exact: true }).click();
  await page.locator('.bar .pill[data-status="idle"]').waitFor();
  // Chromium logs each failed WebSocket as an error; nothing else may have gone wrong.
  assert.deepEqual(pageErrors.filter((e) => !e.startsWith(`WebSocket connection to 'ws://127.0.0.1:${port}/`)), []);
});
