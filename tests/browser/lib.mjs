// What the browser tests share: paths, how Chromium is launched here, and starting the real
// broker on free ports.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BRIDGE = path.join(ROOT, 'target', 'debug', 'bridge');
export const DIST = path.join(ROOT, 'www', 'dist');
export const OUT = path.join(ROOT, 'tests', 'output', 'browser');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

// Headless Chromium as root, and never reaching out to the network on its own.
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export const WIDE = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

/// Starts the broker on free loopback ports, keeping its store in `dataDir` (and given
/// `extra` arguments); resolves once it printed all three listening lines with
/// { proc, log, tcp, ws, http }.
export function startBridge(dataDir, extra = []) {
  return new Promise((resolve, reject) => {
    const proc = spawn(
      BRIDGE,
      ['--tcp', '127.0.0.1:0', '--ws', '127.0.0.1:0', '--http', '127.0.0.1:0', '--web-root', DIST,
        '--data-dir', dataDir, ...extra],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: 'info' } },
    );
    const found = {};
    const log = [];
    let pending = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`bridge did not report its listeners within 20 s:\n${log.join('')}`));
    }, 20_000);
    proc.stderr.on('data', (chunk) => log.push(chunk.toString()));
    proc.stdout.on('data', (chunk) => {
      log.push(chunk.toString());
      pending += chunk.toString();
      const lines = pending.split('\n');
      pending = lines.pop();
      for (const line of lines) {
        const m = /^listening (tcp|ws|http) (\S+)$/.exec(line.trim());
        if (m) found[m[1]] = m[2];
      }
      if (found.tcp && found.ws && found.http) {
        clearTimeout(timer);
        const port = (addr) => Number(addr.slice(addr.lastIndexOf(':') + 1));
        resolve({ proc, log, tcp: port(found.tcp), ws: port(found.ws), http: port(found.http) });
      }
    });
    proc.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    proc.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`bridge exited early (${code ?? signal}):\n${log.join('')}`));
    });
  });
}

/// Fails at once, naming what to build or install, when the broker, the web app or
/// Chromium is missing.
export function assertPrerequisites() {
  for (const [what, file] of [
    ['the broker (cargo build -p bridge)', BRIDGE],
    ['the web app (trunk build in www/)', path.join(DIST, 'index.html')],
    ['Chromium (apt-get install chromium)', CHROMIUM],
  ]) {
    assert.ok(existsSync(file), `missing ${what}: ${file}`);
  }
}

/// Launches Chromium with a fresh profile in `userDataDir` and returns { context, page };
/// page errors and console errors are pushed to `pageErrors`.
export async function launchPage(userDataDir, pageErrors) {
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: WIDE,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(15_000);
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error') pageErrors.push(m.text());
  });
  return { context, page };
}
