// End to end on loopback: `wrangler dev --local` (the Worker, built from source) in front of
// `sightline serve` (the origin, publishing its changes to the Worker), with the official
// TraceKit Python SDK pointed at the Worker. The SDK polls through the Worker, opens its SSE
// stream at the edge, receives a breakpoint change made through the admin API within 1 s,
// and the kill switch closes its stream.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as h from '../harness.js';

const PYTHON = process.env.SDK_PYTHON || path.join(h.ROOT, '.venv/sdk-python/bin/python');
const SDK_CHILD = path.join(h.ROOT, 'tests/sdk-python/sdk_child.py');
const WRANGLER = path.join(h.ROOT, 'tests/edge/node_modules/.bin/wrangler');
const SERVICE = 'edge-e2e-py';

let origin;
let wrangler;
let edgeUrl;
let stateDir;
let sdk;

async function startWrangler(port, originUrl) {
  stateDir = mkdtempSync(path.join(tmpdir(), 'sightline-wrangler-'));
  const log = createWriteStream(path.join(h.OUT, 'e2e-wrangler.log'));
  const inspector = await h.freePort();
  const child = spawn(
    WRANGLER,
    [
      'dev', '--local', '--config', path.join(h.ROOT, 'infra/wrangler.toml'),
      '--ip', '127.0.0.1', '--port', String(port),
      '--inspector-ip', '127.0.0.1', '--inspector-port', String(inspector),
      '--persist-to', stateDir, '--show-interactive-dev-session=false', '--log-level', 'warn',
      '--var', `ORIGIN_URL:${originUrl}`, '--var', `PUBLISH_SECRET:${h.SECRET}`, '--var', 'HEARTBEAT_SECS:2',
    ],
    {
      cwd: stateDir,
      env: {
        ...process.env,
        WRANGLER_SEND_METRICS: 'false',
        WRANGLER_SEND_ERROR_REPORTS: 'false',
        WRANGLER_HIDE_BANNER: 'true',
        CLOUDFLARE_CF_FETCH_ENABLED: 'false',
        CI: '1',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    },
  );
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  const url = `http://127.0.0.1:${port}`;
  await h.waitFor(async () => {
    if (child.exitCode !== null) throw new Error(`wrangler exited with ${child.exitCode} (see e2e-wrangler.log)`);
    try {
      return (await fetch(`${url}/api/health`)).status === 200;
    } catch {
      return false;
    }
  }, 60000, 'wrangler dev');
  return { child, url };
}

/** The Python SDK child of tests/sdk-python, speaking JSON lines on fd 3. */
function startSdk(url) {
  const log = createWriteStream(path.join(h.OUT, 'e2e-python-sdk.log'));
  const child = spawn(PYTHON, [SDK_CHILD], {
    env: { ...process.env, SIGHTLINE_URL: url, SIGHTLINE_API_KEY: h.API_KEY, SDK_SERVICE: SERVICE, SDK_PROTO_FD: '3' },
    stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
  });
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  const answers = [];
  let waiting = null;
  let buf = '';
  child.stdio[3].on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (!line.startsWith('@@SL ')) continue;
      answers.push(JSON.parse(line.slice(5)));
      waiting?.();
    }
  });
  const next = (timeoutMs) =>
    new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('the SDK child did not answer')), timeoutMs);
      const check = () => {
        if (answers.length) {
          clearTimeout(t);
          waiting = null;
          resolve(answers.shift());
        }
      };
      waiting = check;
      check();
    });
  return {
    child,
    ready: () => next(30000),
    async state() {
      child.stdin.write(JSON.stringify({ cmd: 'state' }) + '\n');
      return next(10000);
    },
    stop() {
      child.stdin.end(JSON.stringify({ cmd: 'exit' }) + '\n');
      setTimeout(() => child.kill('SIGKILL'), 5000).unref();
    },
  };
}

before(async () => {
  const edgePort = await h.freePort();
  origin = await h.startOrigin({ name: 'e2e', edgeUrl: `http://127.0.0.1:${edgePort}` });
  wrangler = await startWrangler(edgePort, origin.url);
  edgeUrl = wrangler.url;
});

after(async () => {
  sdk?.stop();
  if (wrangler) {
    try {
      process.kill(-wrangler.child.pid, 'SIGTERM');
    } catch {}
    await new Promise((r) => (wrangler.child.exitCode !== null ? r() : wrangler.child.once('exit', r)));
  }
  await origin?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

test('the Python SDK gets breakpoint changes over the edge stream within 1 s; the kill switch closes it', { skip: !existsSync(PYTHON) && 'no .venv/sdk-python (scripts/setup-python.sh)' }, async () => {
  // A breakpoint first: the SDK opens its stream only when a poll lists breakpoints.
  const created = await h.api(edgeUrl, 'POST', '/api/breakpoints', {
    service_name: SERVICE, file_path: SDK_CHILD, line_number: 10, function_name: 'checkout', label: 'edge',
  });
  assert.equal(created.status, 201, created.text);
  const id = created.json.id;

  const dash = await h.openStream(`${edgeUrl}/api/events`, { 'x-api-key': h.API_KEY });
  assert.equal(dash.status, 200);
  sdk = startSdk(edgeUrl);
  const ready = await sdk.ready();
  assert.equal(ready.event, 'ready');
  // Its poll went through the Worker; its stream is held by the edge's Durable Object.
  await h.waitFor(async () => (await sdk.state()).sse_active, 15000, 'the SDK stream');
  await dash.next((e) => e.event === 'sdk_count' && e.data.service === SERVICE && e.data.count === 1, 10000, 'sdk_count 1 at the edge');
  const before = await sdk.state();
  assert.ok(Object.values(before.cache).some((b) => b.id === id), JSON.stringify(before.cache));

  const latencies = [];
  for (const condition of ['amount > 10', 'amount > 20', 'amount > 30']) {
    const t0 = performance.now();
    const r = await h.api(edgeUrl, 'PATCH', `/api/breakpoints/${id}`, { condition });
    assert.equal(r.status, 200, r.text);
    await h.waitFor(async () => Object.values((await sdk.state()).cache).some((b) => b.id === id && b.condition === condition), 1000, `the SDK to see ${condition} within 1 s`);
    latencies.push(performance.now() - t0);
  }
  const s = await sdk.state();
  assert.equal(s.polls_after_start, 0, 'changes arrived over SSE, not by polling');
  console.log(`# admin change -> Python SDK cache via the edge: ${latencies.map((l) => l.toFixed(0)).join(', ')} ms`);

  const kill = await h.api(edgeUrl, 'POST', `/api/services/${SERVICE}/kill-switch`, { enabled: true });
  assert.equal(kill.status, 200, kill.text);
  await h.waitFor(async () => {
    const st = await sdk.state();
    return st.kill_switch === true && st.sse_active === false;
  }, 5000, 'the kill switch to close the SDK stream');
  await dash.next((e) => e.event === 'sdk_count' && e.data.service === SERVICE && e.data.count === 0, 10000, 'sdk_count 0 at the edge');
  const final = await sdk.state();
  assert.deepEqual(final.errors, []);
  assert.deepEqual(final.thread_errors, []);
  dash.close();
});
