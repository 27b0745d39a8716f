// Shared pieces of the edge tests: the real origin (`sightline serve`), the Worker under
// Miniflare (workerd), an SSE client, and signed publishes (HMAC computed here with node's
// crypto, independently of core's Rust implementation).
import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, mkdirSync, createWriteStream, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Miniflare } from 'miniflare';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '../..');
export const BUILD = path.join(ROOT, 'functions/edge/build');
export const OUT = process.env.EDGE_TEST_OUTPUT || path.join(ROOT, 'target/test-output/edge');
export const SIGHTLINE_BIN = process.env.SIGHTLINE_BIN || path.join(ROOT, 'target/debug/sightline');
export const API_KEY = 'ctxio_' + 'e'.repeat(64);
export const SECRET = 'edge-test-secret-' + randomBytes(8).toString('hex');

export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

/** Starts `sightline serve` on a free port; it forwards committed events to `edgeUrl`. */
export async function startOrigin({ name, edgeUrl, extraEnv = {} }) {
  mkdirSync(OUT, { recursive: true });
  const dataDir = mkdtempSync(path.join(tmpdir(), 'sightline-edge-'));
  const port = await freePort();
  const log = createWriteStream(path.join(OUT, `${name}-origin.log`));
  const child = spawn(SIGHTLINE_BIN, ['serve', '--listen', `127.0.0.1:${port}`], {
    env: {
      ...process.env,
      SIGHTLINE_DATA_DIR: dataDir,
      SIGHTLINE_BOOTSTRAP_API_KEY: API_KEY,
      SIGHTLINE_EDGE_PUBLISH_URL: edgeUrl ?? '',
      SIGHTLINE_PUBLISH_SECRET: edgeUrl ? SECRET : '',
      SIGHTLINE_LOG: 'info',
      ...extraEnv,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  const url = `http://127.0.0.1:${port}`;
  await waitFor(async () => {
    if (child.exitCode !== null) throw new Error(`sightline exited with ${child.exitCode}`);
    try {
      return (await fetch(`${url}/api/health`)).ok;
    } catch {
      return false;
    }
  }, 20000, 'origin ready');
  return {
    url,
    dataDir,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r() : child.once('exit', r)));
      rmSync(dataDir, { recursive: true, force: true });
    },
    /** Runs `sightline keys …` against this origin's data dir; returns stdout. */
    async cli(...args) {
      return new Promise((resolve, reject) => {
        const c = spawn(SIGHTLINE_BIN, ['keys', ...args], {
          env: { ...process.env, SIGHTLINE_DATA_DIR: dataDir },
        });
        let out = '';
        let err = '';
        c.stdout.on('data', (d) => (out += d));
        c.stderr.on('data', (d) => (err += d));
        c.on('exit', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(err))));
      });
    },
  };
}

/** The Worker under Miniflare, on `port`, in front of `originUrl`. */
export async function startEdge({ port, originUrl, heartbeatSecs = '1', authCacheSecs = '2' }) {
  const mf = new Miniflare({
    modules: true,
    scriptPath: path.join(BUILD, 'index.js'),
    modulesRoot: BUILD,
    modulesRules: [{ type: 'CompiledWasm', include: ['**/*.wasm'] }],
    compatibilityDate: '2025-09-01',
    durableObjects: { STREAM_HUB: 'StreamHub' },
    bindings: {
      ORIGIN_URL: originUrl,
      PUBLISH_SECRET: SECRET,
      HEARTBEAT_SECS: heartbeatSecs,
      AUTH_CACHE_SECS: authCacheSecs,
      MAX_STREAM_SECS: '0',
    },
    host: '127.0.0.1',
    port,
    cf: false,
  });
  const url = (await mf.ready).toString().replace(/\/$/, '');
  return { mf, url };
}

/** Origin + edge wired both ways (the origin publishes to the edge). */
export async function startStack(name, opts = {}) {
  const edgePort = await freePort();
  const edgeUrl = `http://127.0.0.1:${edgePort}`;
  const origin = await startOrigin({ name, edgeUrl });
  const edge = await startEdge({ port: edgePort, originUrl: origin.url, ...opts });
  return {
    origin,
    edge,
    url: edge.url,
    async stop() {
      await edge.mf.dispose();
      await origin.stop();
    },
  };
}

export async function waitFor(pred, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * An SSE stream read with fetch. `events` collects `{event, data, at}` in arrival order;
 * `ended` resolves when the server closes the stream.
 */
export async function openStream(url, headers = {}) {
  const controller = new AbortController();
  const resp = await fetch(url, {
    headers: { accept: 'text/event-stream', ...headers },
    signal: controller.signal,
  });
  const stream = { status: resp.status, headers: resp.headers, events: [], closed: false };
  if (resp.status !== 200) {
    stream.body = await resp.text();
    return stream;
  }
  const decoder = new TextDecoder();
  let buf = '';
  stream.ended = (async () => {
    try {
      for await (const chunk of resp.body) {
        buf += decoder.decode(chunk, { stream: true });
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const frame = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let event = '';
          const data = [];
          for (const line of frame.split('\n')) {
            if (line.startsWith('event:')) event = line.slice(6).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).trim());
          }
          stream.events.push({ event, data: JSON.parse(data.join('\n')), at: performance.now(), dataLines: data.length });
        }
      }
    } catch {
      // aborted by the test
    }
    stream.closed = true;
  })();
  stream.close = () => controller.abort();
  stream.next = (pred, timeoutMs = 5000, what = 'event') =>
    waitFor(() => stream.events.find(pred), timeoutMs, what);
  stream.named = (name) => stream.events.filter((e) => e.event === name);
  return stream;
}

/** Signs a publish body the way the relay does: v1=hex(HMAC-SHA256(secret, `${ts}.${body}`)). */
export function sign(body, ts, secret = SECRET) {
  return 'v1=' + createHmac('sha256', secret).update(`${ts}.${body}`).digest('hex');
}

export async function publish(edgeUrl, batch, { ts = Math.floor(Date.now() / 1000), secret = SECRET, signature } = {}) {
  const body = JSON.stringify(batch);
  const resp = await fetch(`${edgeUrl}/internal/publish`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-sightline-timestamp': String(ts),
      'x-sightline-signature': signature ?? sign(body, ts, secret),
    },
    body,
  });
  return { status: resp.status, body: await resp.json().catch(() => null) };
}

export async function api(baseUrl, method, pathname, body, key = API_KEY) {
  const resp = await fetch(baseUrl + pathname, {
    method,
    headers: { 'x-api-key': key, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await resp.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: resp.status, json, text, headers: resp.headers };
}

/** Reads a project id via the origin's principal route (through the edge). */
export async function projectId(baseUrl, key = API_KEY) {
  return (await api(baseUrl, 'GET', '/api/auth/principal', null, key)).json.project_id;
}
