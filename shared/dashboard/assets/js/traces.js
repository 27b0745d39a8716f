// Traces: search (service, errors, duration, time) and the waterfall of one trace.

import { api, qs, enc } from './api.js';
import { h, mount, empty, ago, badge, fmtMs, fmtNum, serviceColor } from './ui.js';
import { waterfall } from './waterfall.js';

const RANGES = [['', 'Any time'], ['15', 'Last 15 min'], ['60', 'Last hour'], ['1440', 'Last 24 h']];

export async function list(ctx) {
  const p = ctx.params;
  const f = { service: p.get('service') || '', errors: p.get('errors') === '1', min: p.get('min_duration_ms') || '', range: p.get('range') || '' };
  const { services } = await api('/api/services');
  if (!ctx.current()) return;
  const query = (cursor) => `/api/traces${qs({
    service: f.service, has_error: f.errors ? 'true' : '', min_duration_ms: f.min,
    from: f.range ? new Date(Date.now() - Number(f.range) * 60000).toISOString() : '', limit: 50, cursor,
  })}`;
  const apply = () => ctx.navigate(`/traces${qs({ service: f.service, errors: f.errors ? '1' : '', min_duration_ms: f.min, range: f.range })}`, { replace: true });
  const service = h('select', { id: 'tr-service', onchange: () => { f.service = service.value; apply(); } },
    h('option', { value: '' }, 'All services'), services.map((s) => h('option', { value: s.name, selected: s.name === f.service }, s.name)));
  const range = h('select', { id: 'tr-range', onchange: () => { f.range = range.value; apply(); } },
    RANGES.map(([v, t]) => h('option', { value: v, selected: v === f.range }, t)));
  const min = h('input', { id: 'tr-min', type: 'number', min: 0, step: 1, value: f.min, placeholder: '0', 'data-search': '', class: 'search',
    onchange: () => { f.min = min.value; apply(); } });
  const errs = h('input', { id: 'tr-errors', type: 'checkbox', checked: f.errors, onchange: () => { f.errors = errs.checked; apply(); } });
  const idBox = h('input', { id: 'tr-id', placeholder: 'Trace id', class: 'mono', spellcheck: 'false',
    onkeydown: (ev) => { if (ev.key === 'Enter' && idBox.value.trim()) ctx.navigate(`/traces/${idBox.value.trim().toLowerCase()}`); } });
  const tbody = h('tbody', { 'data-rowkeys': '', id: 'trace-rows' });
  const moreBox = h('div', { class: 'more' });
  const table = h('div', { class: 'panel table-wrap' }, h('table', { id: 'traces' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Root'), h('th', { class: 'hide-sm' }, 'Services'), h('th', {}, 'Duration'), h('th', { class: 'hide-sm' }, 'Spans'), h('th', {}, 'Started'))), tbody), moreBox);
  const emptyBox = empty('No traces yet', 'Send OpenTelemetry traces to this server (OTLP/HTTP, protobuf or JSON) at /v1/traces with an SDK key. Traces that contain snapshots link both ways.',
    h('pre', {}, `OTEL_EXPORTER_OTLP_ENDPOINT=${location.origin}\nOTEL_EXPORTER_OTLP_HEADERS=x-api-key=<your key>`));
  mount(ctx.main, h('div', { class: 'page-head' }, h('h1', {}, 'Traces')),
    h('div', { class: 'filters', role: 'search' },
      h('div', { class: 'field' }, h('label', { for: 'tr-service' }, 'Service'), service),
      h('div', { class: 'field' }, h('label', { for: 'tr-min' }, 'Min duration (ms) ', h('kbd', {}, '/')), min),
      h('div', { class: 'field' }, h('label', { for: 'tr-range' }, 'Time'), range),
      h('div', { class: 'field' }, h('span', { class: 'hint' }, ' '), h('label', { class: 'switch' }, errs, 'Errors only')),
      h('div', { class: 'field' }, h('label', { for: 'tr-id' }, 'Go to trace'), idBox)),
    emptyBox, table);
  let maxDur = 1;
  let shown = 0;
  async function page(cursor) {
    const d = await api(query(cursor));
    if (!ctx.current()) return;
    maxDur = Math.max(maxDur, ...d.traces.map((t) => t.duration_ms || 0));
    for (const t of d.traces) {
      const bar = h('div', { class: 'dur-bar' });
      bar.style.width = `${Math.max(2, ((t.duration_ms || 0) / maxDur) * 120)}px`;
      if (t.has_error) bar.style.background = 'var(--err)';
      tbody.append(h('tr', { class: 'clickable', 'data-trace': t.trace_id, onclick: () => ctx.navigate(`/traces/${t.trace_id}`) },
        h('td', {}, h('a', { href: `/traces/${t.trace_id}` }, t.root_name || h('span', { class: 'muted' }, '(no root span)')), ' ', t.has_error ? badge('error', 'err') : null,
          h('div', { class: 'muted small' }, t.root_service || '')),
        h('td', { class: 'hide-sm' }, (t.services || []).map((s) => legendChip(s))),
        h('td', {}, h('div', { class: 'num' }, fmtMs(t.duration_ms)), bar),
        h('td', { class: 'hide-sm num' }, fmtNum(t.span_count)),
        h('td', {}, ago(t.start_time))));
    }
    shown += d.traces.length;
    mount(moreBox, d.next_cursor ? h('button', { type: 'button', onclick: () => page(d.next_cursor) }, 'Load more') : null);
    emptyBox.classList.toggle('hidden', shown > 0);
    table.classList.toggle('hidden', shown === 0);
  }
  await page();
}

function legendChip(name) {
  const i = h('i');
  i.style.background = serviceColor(name);
  return h('span', { class: 'legend', style: null }, h('span', {}, i, name), ' ');
}

export async function detail(ctx, id) {
  const at = ctx.params.get('at');
  const t = await api(`/api/traces/${enc(id)}${at ? `?at=${enc(at)}` : ''}`);
  if (!ctx.current()) return;
  const spans = t.spans || [];
  const snaps = t.snapshots || [];
  const services = [...new Set(spans.map((s) => s.service || s.service_name || ''))].filter(Boolean);
  const info = h('div', { class: 'panel-body', id: 'span-detail' }, h('p', { class: 'muted' }, 'Select a span to see its attributes.'));
  const wfBox = h('div', { class: 'panel wf', id: 'waterfall' });
  mount(ctx.main,
    h('div', { class: 'crumbs' }, h('a', { href: '/traces' }, 'Traces'), ' / ', h('code', {}, id.slice(0, 16))),
    h('div', { class: 'page-head' }, h('h1', {}, t.root_name || 'Trace'), t.has_error ? badge('error', 'err') : null,
      badge(fmtMs(t.duration_ms ?? null)), badge(`${fmtNum(spans.length)} spans`), snaps.length ? badge(`${snaps.length} snapshot${snaps.length > 1 ? 's' : ''}`, 'warn') : null),
    h('div', { class: 'legend', style: null }, services.map((s) => legendChip(s)), snaps.length ? h('span', {}, h('i', { class: 'marker' }), 'snapshot captured') : null,
      h('span', {}, h('i', { class: 'err-chip' }), 'error')),
    spans.length ? wfBox : empty('No spans stored for this trace', 'Only snapshots refer to it so far; its spans appear when they are exported to /v1/traces.'),
    h('section', { class: 'panel', 'aria-label': 'Span' }, h('div', { class: 'panel-head' }, h('h2', {}, 'Span')), info),
    snaps.length ? h('section', { class: 'panel', 'aria-label': 'Snapshots in this trace' }, h('div', { class: 'panel-head' }, h('h2', {}, 'Snapshots in this trace')),
      h('div', { class: 'panel-body' }, h('ul', {}, snaps.map((s) => h('li', {}, h('a', { href: `/snapshots/${s.id}` }, s.label || s.function_name || s.id), ' ', h('span', { class: 'muted' }, ago(s.captured_at))))))) : null);
  const errChip = ctx.main.querySelector('.err-chip');
  if (errChip) { errChip.style.outline = '2px solid var(--err)'; errChip.style.background = 'transparent'; }
  if (!spans.length) return;
  const wf = waterfall(wfBox, spans, snaps, (span) => showSpan(info, span, snaps, ctx));
  const focus = ctx.params.get('span');
  if (focus) wf.select(focus);
  ctx.onLeave(() => wf.destroy());
}

function showSpan(box, s, snaps, ctx) {
  const attrs = s.attributes || {};
  const mine = snaps.filter((x) => x.span_id && x.span_id === s.span_id);
  mount(box, h('dl', { class: 'kv' },
    h('dt', {}, 'Name'), h('dd', {}, h('code', {}, s.name)),
    h('dt', {}, 'Service'), h('dd', {}, s.service || s.service_name || '—'),
    h('dt', {}, 'Duration'), h('dd', {}, fmtMs(spanDurMs(s))),
    h('dt', {}, 'Status'), h('dd', {}, isError(s) ? badge(s.status_message || 'error', 'err') : 'ok'),
    h('dt', {}, 'Span id'), h('dd', {}, h('code', {}, s.span_id)),
    mine.length ? [h('dt', {}, 'Snapshots'), h('dd', {}, mine.map((x) => h('a', { href: `/snapshots/${x.id}` }, x.label || x.id)))] : null,
    Object.entries(attrs).map(([k, v]) => [h('dt', {}, k), h('dd', { class: 'mono' }, typeof v === 'object' ? JSON.stringify(v) : String(v))])));
  void ctx;
}

export function spanDurMs(s) {
  if (s.duration_ms !== undefined) return s.duration_ms;
  if (s.end_ns !== undefined && s.start_ns !== undefined) return (s.end_ns - s.start_ns) / 1e6;
  return 0;
}

export function isError(s) {
  const st = s.status ?? s.status_code;
  return st === 'error' || st === 'ERROR' || st === 2 || st === 'STATUS_CODE_ERROR' || s.has_error === true;
}
