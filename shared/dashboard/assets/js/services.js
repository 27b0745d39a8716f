// Services: traffic, errors and latency at a glance, connected SDKs, captures and drops,
// and the kill switch.

import { api, enc } from './api.js';
import { on, sdkCounts } from './live.js';
import { h, mount, empty, fmtNum, fmtMs, fmtPct, sparkline, bars, badge, ago, confirmDialog, toast, serviceColor } from './ui.js';

const WINDOW = 60;

export async function list(ctx) {
  const data = await api(`/api/services?window_minutes=${WINDOW}`);
  if (!ctx.current()) return;
  const services = data.services || [];
  const byName = new Map();
  const grid = h('div', { class: 'cards', id: 'service-cards' });
  const head = h('div', { class: 'page-head' },
    h('h1', {}, 'Services'),
    h('span', { class: 'muted' }, `last ${WINDOW} minutes`),
    h('span', { class: 'spacer' }));
  if (!services.length) {
    mount(ctx.main, head, empty('No services yet',
      'A service appears here as soon as an SDK polls for breakpoints or a trace arrives. Point an SDK at this server with an API key:',
      h('pre', {}, `${location.origin}   # SDK endpoint / OTLP base URL\nX-API-Key: <your key>`),
      h('p', {}, 'Then open ', h('a', { href: '/code' }, 'Code'), ' to place a breakpoint.')));
  } else {
    for (const s of services) {
      const card = serviceCard(s);
      byName.set(s.name, { card, s });
      grid.append(card.el);
    }
    mount(ctx.main, head, grid);
  }
  const refresh = async () => {
    const d = await api(`/api/services?window_minutes=${WINDOW}`).catch(() => null);
    if (!d || !ctx.current()) return;
    if ((d.services || []).length !== byName.size) { list(ctx); return; }
    for (const s of d.services) byName.get(s.name)?.card.update(s);
  };
  ctx.onLeave(on('kill_switch', (e) => {
    const entry = byName.get(e.service);
    if (entry) entry.card.update({ ...entry.s, kill_switch: Boolean(e.enabled) });
  }));
  ctx.onLeave(on('sdk_count', (e) => byName.get(e.service)?.card.setSdks(e.count)));
  ctx.onLeave(on('snapshot_captured', refreshSoon));
  ctx.onLeave(on('snapshot_dropped', refreshSoon));
  ctx.onLeave(on('reconnected', refresh));
  const timer = setInterval(refresh, 15000);
  ctx.onLeave(() => clearInterval(timer));
  let pending = null;
  function refreshSoon(e) {
    if (!byName.has(e.service) && e.snapshot?.service_name && !byName.has(e.snapshot.service_name)) { refresh(); return; }
    clearTimeout(pending);
    pending = setTimeout(refresh, 400);
  }
  ctx.onLeave(() => clearTimeout(pending));
}

function serviceCard(initial) {
  let s = initial;
  const el = h('article', { class: 'panel card', 'data-service': s.name, 'aria-labelledby': `svc-${s.name}` });
  const sdkEl = h('span', { class: 'badge accent', 'data-sdks': '' });
  const setSdks = (n) => {
    sdkEl.textContent = `${n} SDK${n === 1 ? '' : 's'} connected`;
    sdkEl.className = `badge ${n > 0 ? 'ok' : ''}`;
  };
  function update(next) {
    s = next;
    const stats = s.stats || {};
    const series = stats.series || [];
    const killBtn = h('button', {
      type: 'button', class: s.kill_switch ? 'danger solid small' : 'danger small', 'data-kill': '',
      'aria-pressed': s.kill_switch ? 'true' : 'false',
      onclick: () => toggleKill(s),
    }, s.kill_switch ? 'Kill switch ON · resume' : 'Kill switch');
    el.classList.toggle('kill-on', Boolean(s.kill_switch));
    mount(el,
      h('div', { class: 'card-head' },
        h('i', { class: 'svc-dot', 'aria-hidden': 'true' }),
        h('h2', { id: `svc-${s.name}` }, s.name),
        s.kill_switch ? badge('captures stopped', 'err') : null,
        h('span', { class: 'spacer', style: null }),
      ),
      h('div', { class: 'card-head' }, sdkEl, h('span', { class: 'muted small' }, 'last seen ', ago(s.last_seen)), h('span', { class: 'spacer' }), killBtn),
      h('div', { class: 'metrics' },
        metric('Requests/min', fmtNum(stats.request_rate_per_minute, 1), sparkline(series.map((p) => p.requests), { label: 'requests per minute' })),
        metric('Error rate', fmtPct(stats.error_rate), sparkline(series.map((p) => p.errors), { kind: 'err', label: 'errors per minute' })),
        metric('p95 latency', fmtMs(stats.p95_ms), sparkline(series.map((p) => p.p95_ms || 0), { label: 'p95 latency per minute' })),
      ),
      h('div', { class: 'metrics' },
        metric('Captures', h('span', { 'data-captures': '' }, fmtNum(s.captures))),
        metric('Dropped', fmtNum(s.drops_total)),
        metric('p50 latency', fmtMs(stats.p50_ms)),
      ),
      Object.values(s.drops || {}).some((n) => n > 0)
        ? h('div', {}, h('h3', {}, 'Drops by reason'), bars(s.drops))
        : h('p', { class: 'muted small' }, s.captures ? 'No captures dropped.' : 'No captures yet: set a breakpoint from the Code page.'),
      h('div', { class: 'card-head small' },
        h('a', { href: `/code?service=${enc(s.name)}` }, 'Code'), '·',
        h('a', { href: `/breakpoints?service=${enc(s.name)}` }, 'Breakpoints'), '·',
        h('a', { href: `/snapshots?service=${enc(s.name)}` }, 'Snapshots'), '·',
        h('a', { href: `/traces?service=${enc(s.name)}` }, 'Traces')),
    );
    const dot = el.querySelector('.svc-dot');
    dot.classList.add('legend');
    dot.style.cssText = '';
    dot.style.width = '10px'; dot.style.height = '10px'; dot.style.borderRadius = '3px';
    dot.style.background = serviceColor(s.name);
    setSdks(sdkCounts[s.name] ?? s.connected_sdks ?? 0);
  }
  update(s);
  return { el, update, setSdks };
}

function metric(label, value, extra) {
  return h('div', { class: 'metric' }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value), extra);
}

async function toggleKill(s) {
  const enabling = !s.kill_switch;
  const ok = await confirmDialog(enabling
    ? { title: `Stop all captures in ${s.name}?`, body: 'Every SDK of this service stops capturing at once, and the server drops anything still sent. Breakpoints are kept; resume any time.', confirm: 'Turn the kill switch on', danger: true }
    : { title: `Resume captures in ${s.name}?`, body: 'Active breakpoints start capturing again.', confirm: 'Resume captures' });
  if (!ok) return;
  try {
    await api(`/api/services/${enc(s.name)}/kill-switch`, { method: 'POST', body: { enabled: enabling } });
    toast(enabling ? `Kill switch on for ${s.name}` : `Captures resumed for ${s.name}`);
  } catch (e) {
    toast(e.message, 'err');
  }
}
