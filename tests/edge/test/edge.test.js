// The edge Worker under Miniflare (workerd), in front of a real `sightline serve` origin
// that publishes its committed changes to the Worker's signed publish endpoint.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from '../harness.js';

let stack;
let project;
const sdkHeaders = () => ({ 'x-api-key': h.API_KEY });
const sdkStream = (service, headers = sdkHeaders()) =>
  h.openStream(`${stack.url}/sdk/snapshots/stream/${encodeURIComponent(service)}`, headers);
const dashboardStream = (headers = sdkHeaders()) => h.openStream(`${stack.url}/api/events`, headers);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  stack = await h.startStack('miniflare');
  project = await h.projectId(stack.url);
});
after(async () => {
  await stack?.stop();
});

test('N SDK streams and a dashboard stream receive changes in commit order', async () => {
  const N = 8;
  const service = 'svc-order';
  const streams = await Promise.all(Array.from({ length: N }, () => sdkStream(service)));
  const dash = await dashboardStream();
  for (const s of [...streams, dash]) {
    assert.equal(s.status, 200);
    assert.match(s.headers.get('content-type'), /text\/event-stream/);
    await s.next((e) => e.event === 'init', 5000, 'init');
    assert.equal(s.events[0].event, 'init');
  }
  assert.deepEqual(streams[0].events[0].data, { breakpoints: [], kill_switch: false });

  // Changes made through the admin API (passed through the Worker to the origin), which the
  // origin publishes back to the edge.
  const created = await h.api(stack.url, 'POST', '/api/breakpoints', {
    service_name: service,
    file_path: '/app/orders.py',
    line_number: 42,
  });
  assert.equal(created.status, 201, created.text);
  const id = created.json.id;
  const conditions = ['amount > 1', 'amount > 2', 'amount > 3'];
  for (const condition of conditions) {
    const r = await h.api(stack.url, 'PATCH', `/api/breakpoints/${id}`, { condition });
    assert.equal(r.status, 200, r.text);
  }
  // And a signed batch published directly, as the relay does: ten updates in one batch.
  const direct = Array.from({ length: 10 }, (_, n) => ({
    project_id: project,
    service,
    event: 'breakpoint_updated',
    data: { id, file_path: '/app/orders.py', line_number: 42, seq: n },
    audience: 'all',
  }));
  const pub = await h.publish(stack.url, { id: `batch-order-${Date.now()}`, events: direct });
  assert.equal(pub.status, 200, JSON.stringify(pub.body));
  assert.deepEqual(pub.body, { delivered: 10 });

  for (const s of [...streams, dash]) {
    await s.next((e) => e.data.seq === 9, 5000, 'the last direct update');
    const changes = s.events.filter((e) => e.event.startsWith('breakpoint_'));
    assert.deepEqual(
      changes.map((e) => e.event),
      ['breakpoint_created', ...conditions.map(() => 'breakpoint_updated'), ...direct.map(() => 'breakpoint_updated')],
    );
    assert.deepEqual(changes.slice(1, 4).map((e) => e.data.condition), conditions);
    assert.deepEqual(changes.slice(4).map((e) => e.data.seq), [...Array(10).keys()]);
    assert.ok(s.events.every((e) => e.dataLines === 1), 'one data line per event');
  }
  // Dashboards also get the admin view and each event's service.
  assert.ok(dash.events.some((e) => e.event === 'breakpoint' && e.data.id === id));
  assert.equal(dash.named('breakpoint_updated')[0].data.service, service);
  // SDK streams get only SDK events.
  assert.ok(!streams[0].events.some((e) => e.event === 'breakpoint' || e.event === 'sdk_count'));
  for (const s of [...streams, dash]) s.close();
});

test('a reconnecting stream gets a fresh init with the current state', async () => {
  const service = 'svc-reconnect';
  const first = await sdkStream(service);
  await first.next((e) => e.event === 'init');
  const created = await h.api(stack.url, 'POST', '/api/breakpoints', {
    service_name: service,
    file_path: '/app/a.py',
    line_number: 7,
  });
  await first.next((e) => e.event === 'breakpoint_created');
  first.close();
  await first.ended;
  const again = await sdkStream(service);
  const init = await again.next((e) => e.event === 'init');
  assert.equal(again.events[0].event, 'init');
  assert.deepEqual(init.data.breakpoints.map((b) => b.id), [created.json.id]);
  assert.equal(init.data.kill_switch, false);
  again.close();
});

test('streams without a valid key of the right scope are refused at the edge', async () => {
  const none = await sdkStream('svc-auth', {});
  assert.equal(none.status, 401);
  assert.equal(JSON.parse(none.body).error.code, 'unauthorized');
  const wrong = await sdkStream('svc-auth', { 'x-api-key': 'ctxio_' + '0'.repeat(64) });
  assert.equal(wrong.status, 401);
  assert.ok(JSON.parse(wrong.body).error.message.length > 0);
  const bearer = await sdkStream('svc-auth', { authorization: `Bearer ${h.API_KEY}` });
  assert.equal(bearer.status, 200);
  bearer.close();

  const sdkOnly = await stack.origin.cli('create', '--scopes', 'sdk', '--name', 'edge-sdk-only');
  const dash = await dashboardStream({ 'x-api-key': sdkOnly });
  assert.equal(dash.status, 403);
  assert.equal(JSON.parse(dash.body).error.code, 'forbidden');
  const adminOnly = await stack.origin.cli('create', '--scopes', 'admin', '--name', 'edge-admin-only');
  const sdk = await sdkStream('svc-auth', { 'x-api-key': adminOnly });
  assert.equal(sdk.status, 403);

  // Revocation is honoured once the edge's cache (AUTH_CACHE_SECS=2 here) and the origin's
  // own key cache (10 s) have expired.
  const ok = await sdkStream('svc-auth', { 'x-api-key': sdkOnly });
  assert.equal(ok.status, 200);
  ok.close();
  const keyId = (await h.api(stack.url, 'GET', '/api/auth/principal', null, sdkOnly)).json.key_id;
  await stack.origin.cli('revoke', keyId);
  await h.waitFor(
    async () => {
      const s = await sdkStream('svc-auth', { 'x-api-key': sdkOnly });
      s.close?.();
      return s.status === 401;
    },
    20000,
    'the revoked key to be refused',
  );
});

test('publishes with a bad, missing, stale or replayed signature are refused', async () => {
  const batch = (id) => ({
    id,
    events: [{ project_id: project, service: 'svc-pub', event: 'breakpoint_deleted', data: { id: 'x' }, audience: 'all' }],
  });
  const now = Math.floor(Date.now() / 1000);

  const wrongSecret = await h.publish(stack.url, batch('b-wrong'), { secret: 'not-the-secret' });
  assert.equal(wrongSecret.status, 401);
  assert.equal(wrongSecret.body.error.code, 'bad_signature');

  const garbled = await h.publish(stack.url, batch('b-garbled'), { signature: 'v1=zz' });
  assert.equal(garbled.status, 401);
  assert.equal(garbled.body.error.code, 'malformed_signature');

  const noHeaders = await fetch(`${stack.url}/internal/publish`, {
    method: 'POST',
    body: JSON.stringify(batch('b-none')),
  });
  assert.equal(noHeaders.status, 401);
  assert.equal((await noHeaders.json()).error.code, 'missing_signature');

  // The window is 300 s either way; `now` here is floored and the Worker reads its clock a
  // little later, so the probes sit well outside the window rather than one second past it.
  const stale = await h.publish(stack.url, batch('b-stale'), { ts: now - 330 });
  assert.equal(stale.status, 401);
  assert.equal(stale.body.error.code, 'stale_request');
  const future = await h.publish(stack.url, batch('b-future'), { ts: now + 330 });
  assert.equal(future.status, 401);
  assert.equal(future.body.error.code, 'stale_request');

  // The same signed request twice, then the same batch id re-signed at another second.
  const body = JSON.stringify(batch('b-replay'));
  const sig = h.sign(body, now);
  const send = (ts, signature) =>
    fetch(`${stack.url}/internal/publish`, {
      method: 'POST',
      headers: { 'x-sightline-timestamp': String(ts), 'x-sightline-signature': signature },
      body,
    });
  assert.equal((await send(now, sig)).status, 200);
  const replay = await send(now, sig);
  assert.equal(replay.status, 401);
  assert.equal((await replay.json()).error.code, 'replayed_request');
  const reSigned = await send(now - 1, h.sign(body, now - 1));
  assert.equal(reSigned.status, 401);
  assert.equal((await reSigned.json()).error.code, 'replayed_request');

  const notJson = await h.publish(stack.url, 'not a batch');
  assert.equal(notJson.status, 400);
  assert.equal(notJson.body.error.code, 'invalid_batch');
  const get = await fetch(`${stack.url}/internal/publish`);
  assert.equal(get.status, 405);
});

test('heartbeats arrive from the alarm', async () => {
  const s = await sdkStream('svc-heartbeat');
  await s.next((e) => e.event === 'init');
  await h.waitFor(() => s.named('heartbeat').length >= 2, 5000, 'two heartbeats (HEARTBEAT_SECS=1)');
  const [a, b] = s.named('heartbeat');
  assert.ok(typeof a.data.ts === 'number' && b.data.ts > a.data.ts);
  s.close();
});

test('a dead stream is pruned and dashboards see the SDK count drop', async () => {
  const service = 'svc-dead';
  const dash = await dashboardStream();
  await dash.next((e) => e.event === 'init');
  const count = (n) => (e) => e.event === 'sdk_count' && e.data.service === service && e.data.count === n;
  const a = await sdkStream(service);
  const b = await sdkStream(service);
  await dash.next(count(2), 5000, 'sdk_count 2');
  a.close();
  await a.ended;
  await dash.next(count(1), 10000, 'sdk_count 1 after a dead stream was pruned');
  // The survivor still gets events.
  await h.api(stack.url, 'POST', '/api/breakpoints', { service_name: service, file_path: '/d.py', line_number: 1 });
  await b.next((e) => e.event === 'breakpoint_created');
  b.close();
  await dash.next(count(0), 10000, 'sdk_count 0');
  // A new dashboard starts from the current counts.
  const dash2 = await dashboardStream();
  const init = await dash2.next((e) => e.event === 'init');
  assert.equal(init.data.sdk_counts[service], undefined);
  assert.equal(init.data.sdk_counts['svc-order'], undefined);
  dash.close();
  dash2.close();
});

test('the kill switch ends SDK streams, and a new stream gets init then closes', async () => {
  const service = 'svc-kill';
  const s = await sdkStream(service);
  await s.next((e) => e.event === 'init');
  const r = await h.api(stack.url, 'POST', `/api/services/${service}/kill-switch`, { enabled: true });
  assert.equal(r.status, 200, r.text);
  const kill = await s.next((e) => e.event === 'kill_switch');
  assert.deepEqual(kill.data, { enabled: true });
  await Promise.race([s.ended, sleep(5000)]);
  assert.equal(s.closed, true, 'stream closed after kill_switch');

  const again = await sdkStream(service);
  await Promise.race([again.ended, sleep(5000)]);
  assert.equal(again.closed, true);
  assert.deepEqual(again.events.map((e) => e.event), ['init']);
  assert.equal(again.events[0].data.kill_switch, true);
  await h.api(stack.url, 'POST', `/api/services/${service}/kill-switch`, { enabled: false });
});

test('other routes pass through to the origin unchanged', async () => {
  const direct = await h.api(stack.origin.url, 'GET', '/api/breakpoints/does-not-exist');
  const viaEdge = await h.api(stack.url, 'GET', '/api/breakpoints/does-not-exist');
  assert.equal(viaEdge.status, direct.status);
  assert.equal(viaEdge.status, 404);
  assert.deepEqual(viaEdge.json, direct.json);
  assert.equal(viaEdge.headers.get('content-type'), direct.headers.get('content-type'));
  const poll = await h.api(stack.url, 'GET', '/sdk/snapshots/active/svc-order');
  assert.equal(poll.status, 200);
  assert.equal(poll.json.sse_endpoint, '/sdk/snapshots/stream/svc-order');
  const unauth = await h.api(stack.url, 'GET', '/api/services', null, 'bad');
  assert.equal(unauth.status, 401);
});
