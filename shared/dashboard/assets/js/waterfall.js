// The trace waterfall: spans in call order as positioned bars. Only the rows in view are
// in the DOM (virtualised), so a trace of thousands of spans scrolls smoothly.

import { h, mount, fmtMs, serviceColor } from './ui.js';

const ROW = 28;
const OVERSCAN = 12;

/** Orders spans depth-first under their parents; returns [{span, depth}]. */
export function layout(spans) {
  const byId = new Map(spans.map((s) => [s.span_id, s]));
  const children = new Map();
  const roots = [];
  for (const s of spans) {
    const p = s.parent_span_id;
    if (p && byId.has(p) && p !== s.span_id) {
      if (!children.has(p)) children.set(p, []);
      children.get(p).push(s);
    } else roots.push(s);
  }
  const start = (s) => Number(s.start_ns || 0);
  const out = [];
  const seen = new Set();
  const stack = roots.sort((a, b) => start(b) - start(a)).map((s) => [s, 0]);
  while (stack.length) {
    const [s, d] = stack.pop();
    if (seen.has(s.span_id)) continue;
    seen.add(s.span_id);
    out.push({ span: s, depth: d });
    const kids = (children.get(s.span_id) || []).sort((a, b) => start(b) - start(a));
    for (const k of kids) stack.push([k, d + 1]);
  }
  return out;
}

export function waterfall(box, spans, snapshots, onSelect) {
  const rows = layout(spans);
  const t0 = Math.min(...spans.map((s) => Number(s.start_ns || 0)));
  const t1 = Math.max(...spans.map((s) => Number(s.end_ns || s.start_ns || 0)));
  const total = Math.max(1, t1 - t0);
  const markers = new Map();
  const rootId = rows[0]?.span.span_id;
  for (const snap of snapshots) {
    const at = snap.captured_at ? new Date(snap.captured_at).getTime() * 1e6 : null;
    const key = snap.span_id && rows.some((r) => r.span.span_id === snap.span_id) ? snap.span_id : rootId;
    if (!markers.has(key)) markers.set(key, []);
    markers.get(key).push({ snap, at });
  }
  const pct = (ns) => `${Math.min(100, Math.max(0, ((ns - t0) / total) * 100))}%`;
  const ticks = h('div', { class: 'ticks', 'aria-hidden': 'true' });
  for (let i = 0; i <= 4; i += 1) {
    const tk = h('span', { class: 'tick' }, i === 0 ? '0' : fmtMs((total * i) / 4 / 1e6));
    tk.style.left = `${i * 25}%`;
    if (i === 0) tk.style.transform = 'none';
    if (i === 4) tk.style.transform = 'translateX(-100%)';
    ticks.append(tk);
  }
  const inner = h('div', { class: 'wf-rows', role: 'list' });
  inner.style.height = `${rows.length * ROW}px`;
  const scroller = h('div', { class: 'wf-scroll', tabindex: '0', role: 'region', 'aria-label': `Waterfall of ${rows.length} spans; arrow keys or j/k move, Enter selects` }, inner);
  mount(box, h('div', { class: 'wf-head' }, h('div', { class: 'muted', style: null }, h('span', {}, ' Span')), ticks), scroller);
  let selected = -1;
  let frame = 0;

  function rowEl(i) {
    const { span: s, depth } = rows[i];
    const start = Number(s.start_ns || 0);
    const end = Number(s.end_ns || start);
    const svc = s.service || s.service_name || '';
    const colour = serviceColor(svc);
    const err = isErr(s);
    const dot = h('i', { class: 'svc' });
    dot.style.background = colour;
    const label = h('div', { class: 'wf-label', title: `${svc} · ${s.name}` }, dot, h('span', {}, s.name || '(unnamed)'), h('span', { class: 'muted small' }, svc));
    label.style.paddingLeft = `${8 + Math.min(depth, 24) * 12}px`;
    const bar = h('div', { class: `wf-bar ${err ? 'error' : ''}`, 'data-span-bar': '' });
    bar.style.left = pct(start);
    bar.style.width = `${Math.max(0.2, ((end - start) / total) * 100)}%`;
    bar.style.background = err ? 'var(--err)' : colour;
    const time = h('span', { class: 'wf-time' }, fmtMs((end - start) / 1e6));
    const frac = (end - t0) / total;
    if (frac > 0.85 && (end - start) / total > 0.15) { time.classList.add('inside'); time.style.right = `${(1 - frac) * 100}%`; } else if (frac > 0.85) { time.style.right = `${(1 - (start - t0) / total) * 100}%`; time.style.paddingRight = '4px'; } else time.style.left = pct(end);
    const track = h('div', { class: 'wf-track' }, bar, time);
    for (const m of markers.get(s.span_id) || []) {
      const mk = h('a', { class: 'wf-marker', href: `/snapshots/${m.snap.id}`, title: `Snapshot ${m.snap.label || ''} captured here`, 'aria-label': `Snapshot ${m.snap.label || m.snap.id}`, 'data-snapshot-marker': '' });
      mk.style.left = m.at ? pct(Math.min(Math.max(m.at, start), end)) : pct(start);
      mk.addEventListener('click', (ev) => ev.stopPropagation());
      track.append(mk);
    }
    const el = h('div', { class: `wf-row ${i === selected ? 'selected' : ''}`, role: 'listitem', 'data-span': s.span_id, 'aria-selected': i === selected ? 'true' : 'false' }, label, track);
    el.style.top = `${i * ROW}px`;
    el.addEventListener('click', () => select(i));
    return el;
  }

  // Rows in the DOM by index: scrolling only adds the rows coming into view and removes
  // those leaving it.
  const live = new Map();
  function draw() {
    frame = 0;
    const first = Math.max(0, Math.floor(scroller.scrollTop / ROW) - OVERSCAN);
    const last = Math.min(rows.length, Math.ceil((scroller.scrollTop + scroller.clientHeight) / ROW) + OVERSCAN);
    for (const [i, el] of live) {
      if (i < first || i >= last) { el.remove(); live.delete(i); }
    }
    const fresh = document.createDocumentFragment();
    for (let i = first; i < last; i += 1) {
      if (!live.has(i)) { const el = rowEl(i); live.set(i, el); fresh.append(el); }
    }
    inner.append(fresh);
  }
  function markSelected() {
    for (const [i, el] of live) {
      el.classList.toggle('selected', i === selected);
      el.setAttribute('aria-selected', i === selected ? 'true' : 'false');
    }
  }
  const schedule = () => { if (!frame) frame = requestAnimationFrame(draw); };

  function select(i, scroll) {
    if (typeof i === 'string') i = rows.findIndex((r) => r.span.span_id === i);
    if (i < 0 || i >= rows.length) return;
    selected = i;
    if (scroll) {
      const top = i * ROW;
      if (top < scroller.scrollTop) scroller.scrollTop = top;
      else if (top + ROW > scroller.scrollTop + scroller.clientHeight) scroller.scrollTop = top + ROW - scroller.clientHeight;
    }
    draw();
    markSelected();
    onSelect(rows[i].span);
  }

  scroller.addEventListener('scroll', schedule, { passive: true });
  scroller.addEventListener('keydown', (ev) => {
    const step = { ArrowDown: 1, j: 1, ArrowUp: -1, k: -1, PageDown: 15, PageUp: -15 }[ev.key];
    if (step) { ev.preventDefault(); ev.stopPropagation(); select(Math.min(rows.length - 1, Math.max(0, (selected < 0 ? -1 : selected) + step)), true); }
  });
  const resize = () => { for (const el of live.values()) el.remove(); live.clear(); schedule(); };
  window.addEventListener('resize', resize);
  draw();
  return {
    select: (spanId) => select(spanId, true),
    destroy: () => { window.removeEventListener('resize', resize); if (frame) cancelAnimationFrame(frame); },
    rowCount: rows.length,
  };
}

function isErr(s) {
  const st = s.status ?? s.status_code;
  return st === 'error' || st === 'ERROR' || st === 2 || st === 'STATUS_CODE_ERROR' || s.has_error === true;
}
