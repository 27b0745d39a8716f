// Snapshots: a live, paginated list filtered by service, breakpoint and time, and the
// detail view (variables tree, stack, request context, security flags, trace link).

import { api, qs, enc } from './api.js';
import { on } from './live.js';
import { h, mount, empty, ago, badge, shortLoc, toast } from './ui.js';

const RANGES = [['', 'Any time'], ['15', 'Last 15 min'], ['60', 'Last hour'], ['1440', 'Last 24 h'], ['10080', 'Last 7 days']];
const PAGE = 50;

export async function list(ctx) {
  const p = ctx.params;
  const f = { service: p.get('service') || '', breakpoint_id: p.get('breakpoint_id') || '', range: p.get('range') || '' };
  const [{ services }, { breakpoints }] = await Promise.all([api('/api/services'), api(`/api/breakpoints${qs({ service: f.service })}`)]);
  if (!ctx.current()) return;
  const from = () => (f.range ? new Date(Date.now() - Number(f.range) * 60000).toISOString() : undefined);
  const query = (cursor) => `/api/snapshots${qs({ service: f.service, breakpoint_id: f.breakpoint_id, from: from(), limit: PAGE, cursor })}`;
  const apply = () => ctx.navigate(`/snapshots${qs({ service: f.service, breakpoint_id: f.breakpoint_id, range: f.range })}`, { replace: true });
  const sel = (id, label, key, options) => {
    const s = h('select', { id, onchange: () => { f[key] = s.value; if (key === 'service') f.breakpoint_id = ''; apply(); } },
      options.map(([v, t]) => h('option', { value: v, selected: v === f[key] }, t)));
    return h('div', { class: 'field' }, h('label', { for: id }, label), s);
  };
  const filters = h('div', { class: 'filters', role: 'search' },
    sel('snap-service', 'Service', 'service', [['', 'All services'], ...services.map((s) => [s.name, s.name])]),
    sel('snap-breakpoint', 'Breakpoint', 'breakpoint_id', [['', 'All breakpoints'], ...breakpoints.map((b) => [b.id, `${b.label || b.function_name || ''} ${shortLoc(b.file_path, b.line_number)}`.trim()])]),
    sel('snap-range', 'Time', 'range', RANGES));
  const bpById = new Map(breakpoints.map((b) => [b.id, b]));
  const tbody = h('tbody', { 'data-rowkeys': '', id: 'snapshot-rows' });
  const moreBox = h('div', { class: 'more' });
  const counter = h('span', { class: 'muted', id: 'snapshot-count' });
  const table = h('div', { class: 'panel table-wrap' }, h('table', { id: 'snapshots' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Captured'), h('th', {}, 'Breakpoint'), h('th', { class: 'hide-sm' }, 'Service'),
      h('th', { class: 'hide-sm' }, 'Flags'), h('th', {}, 'Trace'))), tbody), moreBox);
  const emptyBox = empty('No snapshots yet',
    'Snapshots appear here live, the moment an SDK captures one. Set a breakpoint on the Code page, then exercise that code path.',
    h('p', {}, h('a', { href: '/code', class: 'button primary' }, 'Set a breakpoint')));
  const head = h('div', { class: 'page-head' }, h('h1', {}, 'Snapshots'), counter);
  mount(ctx.main, head, filters, emptyBox, table);
  let shown = 0;

  const row = (s, fresh) => {
    const b = bpById.get(s.breakpoint_id);
    const flags = s.security_flags || [];
    return h('tr', { class: `clickable ${fresh ? 'fresh' : ''}`, 'data-snapshot': s.id, tabindex: '0', onclick: () => ctx.navigate(`/snapshots/${s.id}`),
      onkeydown: (ev) => { if (ev.key === 'Enter' && ev.target === ev.currentTarget) ctx.navigate(`/snapshots/${s.id}`); } },
      h('td', {}, h('a', { href: `/snapshots/${s.id}` }, ago(s.captured_at || s.received_at))),
      h('td', {}, h('div', {}, h('code', {}, s.label || b?.label || s.function_name || '—')), h('div', { class: 'muted small loc' }, shortLoc(s.file_path || b?.file_path, s.line_number || b?.line_number))),
      h('td', { class: 'hide-sm' }, s.service_name),
      h('td', { class: 'hide-sm' }, flags.length ? badge(`${flags.length} security flag${flags.length > 1 ? 's' : ''}`, 'warn') : h('span', { class: 'muted' }, '—')),
      h('td', {}, s.trace_id ? h('a', { href: traceHref(s), onclick: (ev) => ev.stopPropagation() }, h('code', {}, s.trace_id.slice(0, 8))) : h('span', { class: 'muted' }, '—')));
  };
  const setVisible = () => {
    emptyBox.classList.toggle('hidden', shown > 0);
    table.classList.toggle('hidden', shown === 0);
    counter.textContent = shown ? `${shown}${moreBox.childElementCount ? '+' : ''} shown` : '';
  };
  async function page(cursor) {
    const d = await api(query(cursor));
    if (!ctx.current()) return;
    for (const s of d.snapshots) tbody.append(row(s));
    shown += d.snapshots.length;
    mount(moreBox, d.next_cursor ? h('button', { type: 'button', id: 'load-more', onclick: () => page(d.next_cursor) }, 'Load more') : null);
    setVisible();
  }
  await page();
  ctx.onLeave(on('snapshot_captured', (e) => {
    const s = e.snapshot;
    if (!s || (f.service && s.service_name !== f.service) || (f.breakpoint_id && s.breakpoint_id !== f.breakpoint_id)) return;
    if (tbody.querySelector(`[data-snapshot="${CSS.escape(s.id)}"]`)) return;
    tbody.prepend(row(s, true));
    shown += 1;
    setVisible();
  }));
  ctx.onLeave(on('reconnected', () => { tbody.replaceChildren(); shown = 0; page(); }));
}

export async function detail(ctx, id) {
  const s = await api(`/api/snapshots/${enc(id)}`);
  if (!ctx.current()) return;
  const flags = s.security_flags || [];
  const stack = Array.isArray(s.stack_frames) ? s.stack_frames : [];
  const rawStack = typeof s.stack_trace === 'string' ? s.stack_trace.trim() : '';
  const vars = s.variables ?? {};
  const req = s.request_context;
  const exprs = s.expression_results || s.capture_expressions_results || s.expressions;
  const meta = h('dl', { class: 'kv' },
    h('dt', {}, 'Service'), h('dd', {}, h('a', { href: `/snapshots?service=${enc(s.service_name)}` }, s.service_name)),
    h('dt', {}, 'Location'), h('dd', { class: 'loc' }, `${s.file_path || '?'}:${s.line_number ?? '?'}`),
    h('dt', {}, 'Function'), h('dd', {}, h('code', {}, s.function_name || '—')),
    h('dt', {}, 'Breakpoint'), h('dd', {}, s.breakpoint_id ? h('a', { href: `/breakpoints/${s.breakpoint_id}` }, s.label || s.breakpoint_id) : '—'),
    h('dt', {}, 'Captured'), h('dd', {}, s.captured_at ? new Date(s.captured_at).toLocaleString() : '—', ' ', h('span', { class: 'muted' }, '(', ago(s.captured_at), ')')),
    h('dt', {}, 'Trace'), h('dd', {}, s.trace_id
      ? h('a', { href: traceHref(s), id: 'trace-link' }, 'Open trace ', h('code', {}, s.trace_id.slice(0, 16)), ' →')
      : h('span', { class: 'muted' }, 'not part of a trace')));
  mount(ctx.main,
    h('div', { class: 'crumbs' }, h('a', { href: '/snapshots' }, 'Snapshots'), ' / ', h('code', {}, id.slice(0, 12))),
    h('div', { class: 'page-head' }, h('h1', {}, s.label || s.function_name || 'Snapshot'), badge(s.service_name, 'accent'),
      flags.length ? badge(`${flags.length} security flag${flags.length > 1 ? 's' : ''}`, 'warn') : null,
      h('span', { class: 'spacer' }),
      h('button', { type: 'button', class: 'small', onclick: () => navigator.clipboard?.writeText(JSON.stringify(vars, null, 2)).then(() => toast('Variables copied')) }, 'Copy variables')),
    h('div', { class: 'detail-grid' },
      h('div', { class: 'stack' },
        section('Variables', h('div', { class: 'tree', id: 'variables' }, tree(vars))),
        exprs ? section('Capture expressions', h('div', { class: 'tree' }, tree(exprs))) : null,
        section('Stack trace', stack.length
          ? [h('ol', { class: 'frames', id: 'stack' }, stack.map((fr) => frame(fr, s))),
            rawStack ? h('details', { class: 'raw' }, h('summary', {}, 'As sent by the SDK'), h('pre', {}, rawStack)) : null]
          : rawStack ? h('pre', { id: 'stack' }, rawStack) : h('p', { class: 'muted' }, 'No stack trace was captured.'))),
      h('div', { class: 'stack' },
        section('Details', meta),
        section('Security flags', flags.length
          ? h('ul', { class: 'flags', id: 'security-flags' }, flags.map((fl) => h('li', {}, badge(flagText(fl), 'warn'))))
          : h('p', { class: 'muted' }, 'None: no PII or secrets were found in this capture.')),
        section('Request', req && Object.keys(req).length ? requestView(req) : h('p', { class: 'muted' }, 'No request context: the SDK captured outside a request, or does not report one.')))));
}

function section(title, body) {
  return h('section', { class: 'panel', 'aria-label': title }, h('div', { class: 'panel-head' }, h('h2', {}, title)), h('div', { class: 'panel-body' }, body));
}

function flagText(f) {
  if (typeof f === 'string') return f.replaceAll('_', ' ');
  return [f.type || f.kind || f.pattern, f.path || f.field || f.variable].filter(Boolean).join(' · ') || JSON.stringify(f);
}

const REDACTED = /^\[REDACTED(:[^\]]*)?\]$/;

/** A collapsible tree of any JSON value; redacted values are marked. */
export function tree(value) {
  return h('ul', {}, entries(value).map(([k, v]) => node(k, v, 0)));
}

function entries(v) {
  if (Array.isArray(v)) return v.map((x, i) => [String(i), x]);
  if (v && typeof v === 'object') return Object.entries(v);
  return [['value', v]];
}

function node(key, v, depth) {
  const keyEl = h('span', { class: 'key' }, key);
  if (v && typeof v === 'object') {
    const n = Array.isArray(v) ? v.length : Object.keys(v).length;
    const kids = Object.keys(v).length ? h('ul', {}, entries(v).map(([k, x]) => node(k, x, depth + 1))) : null;
    return h('li', { 'data-key': key }, h('details', { open: depth < 2 },
      h('summary', {}, keyEl, ' ', h('span', { class: 'type' }, Array.isArray(v) ? `array[${n}]` : `{${n}}`)), kids));
  }
  return h('li', { 'data-key': key }, keyEl, ': ', leaf(v));
}

function leaf(v) {
  if (typeof v === 'string' && (REDACTED.test(v) || isRedactedKey(v))) {
    return h('span', { class: 'redacted', 'data-redacted': '', title: 'Removed by PII scrubbing before storage' }, v);
  }
  if (typeof v === 'string') return h('span', { class: 'str' }, JSON.stringify(v));
  if (typeof v === 'number') return h('span', { class: 'num' }, String(v));
  if (typeof v === 'boolean') return h('span', { class: 'bool' }, String(v));
  return h('span', { class: 'null' }, 'null');
}

function isRedactedKey(v) {
  return v.startsWith('[REDACTED');
}

function frame(fr, s) {
  const file = fr.file || fr.filename || fr.file_path || '';
  const line = fr.line ?? fr.lineno ?? fr.line_number;
  const fn = fr.function || fr.function_name || fr.name || '';
  const captured = (file && s.file_path && (file === s.file_path || file.endsWith(s.file_path) || s.file_path.endsWith(file)) && Number(line) === Number(s.line_number));
  return h('li', { class: captured ? 'captured' : '', 'aria-current': captured ? 'true' : null, title: captured ? 'The captured frame' : null },
    h('div', { class: 'fn-name' }, fn || '(anonymous)', captured ? ' ' : null, captured ? badge('captured here', 'accent') : null),
    h('div', { class: 'muted' }, `${file}${line !== undefined && line !== null ? `:${line}` : ''}`));
}

function requestView(req) {
  const rows = [];
  for (const [k, v] of Object.entries(req)) {
    if (v && typeof v === 'object') continue;
    rows.push(h('dt', {}, k), h('dd', {}, typeof v === 'string' && REDACTED.test(v) ? leaf(v) : String(v)));
  }
  const nested = Object.entries(req).filter(([, v]) => v && typeof v === 'object');
  return h('div', { class: 'stack', id: 'request-context' }, h('dl', { class: 'kv' }, rows),
    nested.map(([k, v]) => h('div', {}, h('h3', {}, k), h('div', { class: 'tree' }, tree(v)))));
}

/** The trace view of a snapshot's trace: its span selected, and its capture time, which
 * finds the snapshots of a trace whose spans never arrived. */
function traceHref(s) {
  const q = new URLSearchParams();
  if (s.span_id) q.set('span', s.span_id);
  if (s.captured_at) q.set('at', s.captured_at);
  const query = q.toString();
  return `/traces/${s.trace_id}${query ? `?${query}` : ''}`;
}
