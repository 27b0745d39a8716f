// Fan-out load: STREAMS SDK streams of one service, then ROUNDS changes; reports the latency
// from the change to its arrival on every stream (p50/p99) and the memory held per stream.
// Run by hand or from scripts/test-edge.sh --perf; prints a figures table, asserts nothing
// about timing (benchmarks are not tests).
//   node perf/fanout.js [edge|local|both]   (env STREAMS=1000 ROUNDS=20)
import { readFileSync, readdirSync } from 'node:fs';
import * as h from '../harness.js';

const STREAMS = Number(process.env.STREAMS || 1000);
const ROUNDS = Number(process.env.ROUNDS || 20);
/** Rounds run first and not counted (JIT warm-up of the runtime, the server and this client). */
const WARMUP = Number(process.env.WARMUP || 3);
const SERVICE = 'perf-fanout';
const which = process.argv[2] || 'both';

function rssKiB(pid) {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/);
  return m ? Number(m[1]) : NaN;
}
function childrenOf(pid) {
  const out = [];
  for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(p));
    } catch {}
  }
  return out;
}
function processNamed(name, root = process.pid) {
  for (const c of childrenOf(root)) {
    try {
      if (readFileSync(`/proc/${c}/comm`, 'utf8').trim() === name) return c;
    } catch {}
    const deeper = processNamed(name, c);
    if (deeper) return deeper;
  }
  return null;
}
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A lean stream reader for the load: one `{at, text}` per chunk (frames are written whole). */
async function openLean(url) {
  const controller = new AbortController();
  const resp = await fetch(url, { headers: { accept: 'text/event-stream', 'x-api-key': h.API_KEY }, signal: controller.signal });
  const s = { status: resp.status, events: [], close: () => controller.abort() };
  if (resp.status !== 200) return s;
  const decoder = new TextDecoder();
  (async () => {
    try {
      for await (const chunk of resp.body) s.events.push({ at: performance.now(), text: decoder.decode(chunk) });
    } catch {}
  })();
  return s;
}

/** Opens the streams, runs `change(round)` ROUNDS times, measures arrival on every stream. */
async function measure(label, baseUrl, serverPid, change, matches) {
  const rssBefore = rssKiB(serverPid);
  const streams = [];
  for (let i = 0; i < STREAMS; i += 50) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(50, STREAMS - i) }, () =>
        openLean(`${baseUrl}/sdk/snapshots/stream/${SERVICE}`),
      ),
    );
    streams.push(...batch);
  }
  if (streams.some((s) => s.status !== 200)) throw new Error(`${label}: a stream was refused`);
  await h.waitFor(() => streams.every((s) => s.events.length > 0), 60000, 'every init');
  await sleep(1000);
  const rssAfter = rssKiB(serverPid);
  const latencies = [];
  const firsts = [];
  for (let round = 0; round < WARMUP + ROUNDS; round++) {
    const t0 = performance.now();
    await change(round);
    await h.waitFor(() => streams.every((s) => s.events.some((e) => matches(e, round))), 30000, `round ${round}`);
    if (round >= WARMUP) {
      const these = streams.map((s) => s.events.find((e) => matches(e, round)).at - t0);
      latencies.push(...these);
      firsts.push(Math.min(...these));
    }
    for (const s of streams) s.events.length = 0;
    await sleep(100);
  }
  for (const s of streams) s.close();
  const row = {
    host: label,
    streams: STREAMS,
    samples: latencies.length,
    first_stream_p50_ms: pct(firsts, 50).toFixed(1),
    p50_ms: pct(latencies, 50).toFixed(1),
    p99_ms: pct(latencies, 99).toFixed(1),
    max_ms: Math.max(...latencies).toFixed(1),
    rss_per_stream_kib: ((rssAfter - rssBefore) / STREAMS).toFixed(1),
  };
  console.log(JSON.stringify(row));
  await sleep(500);
  return row;
}

async function createBreakpoint(baseUrl) {
  const r = await h.api(baseUrl, 'POST', '/api/breakpoints', { service_name: SERVICE, file_path: '/perf.py', line_number: 1 });
  if (r.status !== 201) throw new Error(r.text);
  return r.json.id;
}

const rows = [];
if (which === 'edge' || which === 'both') {
  const stack = await h.startStack('perf', { heartbeatSecs: '15' });
  try {
    const workerd = processNamed('workerd');
    const project = await h.projectId(stack.url);
    // The edge alone: signed publishes straight to the Worker (what the relay does).
    rows.push(
      await measure('edge (workerd, one Durable Object): signed publish', stack.url, workerd, async (round) => {
        const r = await h.publish(stack.url, {
          id: `perf-${Date.now()}-${round}`,
          events: [{ project_id: project, service: SERVICE, event: 'breakpoint_updated', data: { id: 'perf', round }, audience: 'all' }],
        });
        if (r.status !== 200) throw new Error(JSON.stringify(r.body));
      }, (e, round) => e.text.includes(`"round":${round}}`)),
    );
    // The whole path: admin change at the origin, forwarded to the edge, fanned out.
    const id = await createBreakpoint(stack.url);
    rows.push(
      await measure('edge: admin change at the origin -> edge', stack.url, workerd, async (round) => {
        const r = await h.api(stack.origin.url, 'PATCH', `/api/breakpoints/${id}`, { condition: `n > ${round}` });
        if (r.status !== 200) throw new Error(r.text);
      }, (e, round) => e.text.includes(`"condition":"n > ${round}"`)),
    );
  } finally {
    await stack.stop();
  }
}
if (which === 'local' || which === 'both') {
  const origin = await h.startOrigin({ name: 'perf-local' });
  try {
    const pid = processNamed('sightline');
    const id = await createBreakpoint(origin.url);
    rows.push(
      await measure('local server in-process hub: admin change', origin.url, pid, async (round) => {
        const r = await h.api(origin.url, 'PATCH', `/api/breakpoints/${id}`, { condition: `n > ${round}` });
        if (r.status !== 200) throw new Error(r.text);
      }, (e, round) => e.text.includes(`"condition":"n > ${round}"`)),
    );
  } finally {
    await origin.stop();
  }
}
console.table(rows);
