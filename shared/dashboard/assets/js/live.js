// The dashboard's live stream (/api/events over SSE): one connection for the whole app,
// reconnecting by itself; pages subscribe to event names.

const EVENTS = ['init', 'snapshot_captured', 'snapshot_dropped', 'breakpoint', 'breakpoint_created',
  'breakpoint_updated', 'breakpoint_deleted', 'kill_switch', 'sdk_count', 'heartbeat', 'lagged'];

const listeners = new Map();
let source = null;
let retry = 1000;
let everConnected = false;
export const sdkCounts = {};

/** Subscribes to an event; returns the unsubscribe function. */
export function on(name, fn) {
  if (!listeners.has(name)) listeners.set(name, new Set());
  listeners.get(name).add(fn);
  return () => listeners.get(name)?.delete(fn);
}

function emit(name, data) {
  for (const fn of listeners.get(name) || []) {
    try { fn(data); } catch (e) { console.error(e); }
  }
}

function setState(state, text) {
  const el = document.getElementById('live');
  if (!el) return;
  el.dataset.state = state;
  el.querySelector('.live-text').textContent = text;
  el.title = text;
}

export function connect() {
  if (source) source.close();
  setState('connecting', 'Connecting');
  source = new EventSource('/api/events');
  source.addEventListener('open', () => {
    retry = 1000;
    setState('live', 'Live');
    if (everConnected) {
      const el = document.getElementById('live');
      if (el) el.dataset.reconnects = String(Number(el.dataset.reconnects || 0) + 1);
      emit('reconnected', {});
    }
    everConnected = true;
  });
  for (const name of EVENTS) {
    source.addEventListener(name, (ev) => {
      let data = {};
      try { data = JSON.parse(ev.data); } catch { /* keep {} */ }
      if (name === 'init') Object.assign(sdkCounts, data.sdk_counts || {});
      if (name === 'sdk_count') sdkCounts[data.service] = data.count;
      if (name === 'lagged') emit('reconnected', {});
      emit(name, data);
    });
  }
  source.addEventListener('error', async () => {
    setState('down', 'Reconnecting');
    if (source.readyState !== EventSource.CLOSED) return; // the browser retries by itself
    source.close();
    const res = await fetch('/api/session', { credentials: 'same-origin' }).catch(() => null);
    if (res && res.status === 401) {
      location.assign(`/login?next=${encodeURIComponent(location.pathname)}`);
      return;
    }
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 10000);
  });
}
