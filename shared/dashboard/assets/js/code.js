// Code: the files, functions and lines Sightline discovered per service (from traces'
// code.* attributes and SDK registrations), with "set breakpoint here".

import { api, qs } from './api.js';
import { on } from './live.js';
import { h, mount, empty, fmtNum, ago, badge, debounce } from './ui.js';
import { openEditor } from './breakpoints.js';

export async function page(ctx) {
  const { services } = await api('/api/services');
  if (!ctx.current()) return;
  const head = h('div', { class: 'page-head' }, h('h1', {}, 'Code'));
  if (!services.length) {
    mount(ctx.main, head, empty('No code discovered yet',
      'Sightline learns your code from traces (OTLP spans with code.filepath, code.function and code.lineno) and from SDK call sites. Send a trace to /v1/traces or start an SDK, then pick a line here to set a breakpoint.'));
    return;
  }
  let service = ctx.params.get('service') || services[0].name;
  if (!services.some((s) => s.name === service)) service = services[0].name;
  const select = h('select', { id: 'code-service', onchange: () => { service = select.value; sync(); load(); } },
    services.map((s) => h('option', { value: s.name, selected: s.name === service }, s.name)));
  const search = h('input', {
    id: 'code-search', type: 'search', class: 'search', placeholder: 'File, function or label', 'data-search': '',
    value: ctx.params.get('q') || '', oninput: debounce(() => { sync(); load(); }, 200),
  });
  const tree = h('div', { id: 'code-tree', 'aria-live': 'polite' });
  mount(ctx.main, head,
    h('div', { class: 'filters', role: 'search' },
      h('div', { class: 'field' }, h('label', { for: 'code-service' }, 'Service'), select),
      h('div', { class: 'field' }, h('label', { for: 'code-search' }, 'Search ', h('kbd', {}, '/')), search)),
    tree);

  function sync() {
    history.replaceState(null, '', `/code${qs({ service, q: search.value.trim() })}`);
  }

  async function load() {
    const [code, bps] = await Promise.all([
      api(`/api/code${qs({ service, q: search.value.trim() })}`),
      api(`/api/breakpoints${qs({ service })}`),
    ]);
    if (!ctx.current()) return;
    const active = new Map();
    for (const b of bps.breakpoints || []) active.set(`${b.file_path}:${b.line_number}`, b);
    if (!code.files?.length) {
      mount(tree, empty(search.value ? 'Nothing matches' : 'No code discovered for this service yet',
        search.value ? 'Try another file, function or label.' : 'Send traces with code.* attributes, or let an SDK register a call site.'));
      return;
    }
    mount(tree, h('p', { class: 'muted small' }, `${fmtNum(code.locations)} lines in ${code.files.length} files`),
      code.files.map((f, i) => h('details', { class: 'file panel', open: i < 8 || Boolean(search.value) },
        h('summary', {}, f.file, h('span', { class: 'badge' }, `${f.functions.length} fn`)),
        f.functions.map((fn) => h('details', { class: 'fn', open: true },
          h('summary', {}, fn.name || '(top level)'),
          h('ul', { class: 'lines' }, fn.lines.map((l) => line(f.file, fn.name, l, active.get(`${f.file}:${l.line}`)))))))));
  }

  function line(file, fn, l, bp) {
    return h('li', { 'data-line': `${file}:${l.line}` },
      h('span', { class: 'lineno' }, `:${l.line}`),
      h('span', { class: 'small' },
        l.label ? h('code', {}, l.label) : null, ' ',
        h('span', { class: 'muted' }, `${fmtNum(l.hits)} hits · `, ago(l.last_seen)), ' ',
        l.source ? badge(l.source) : null, ' ',
        bp ? h('a', { href: `/breakpoints/${bp.id}`, class: 'badge ok' }, bp.enabled ? '● breakpoint' : '○ breakpoint (off)') : null),
      h('span', { class: 'line-actions' },
        h('button', {
          type: 'button', class: 'small', 'data-set-breakpoint': '',
          'aria-label': `Set breakpoint at ${file}:${l.line}`,
          onclick: () => openEditor({
            service_name: service, file_path: file, line_number: l.line,
            function_name: fn || '', label: l.label || '',
          }, () => load()),
        }, '+ Set breakpoint here')));
  }

  ctx.onLeave(on('breakpoint', debounce(() => load(), 300)));
  await load();
}
