// Breakpoints: every field editable, the condition validated by the server as you type,
// enable/disable/delete, and capture counters that move live.

import { api, qs, enc } from './api.js';
import { on } from './live.js';
import { h, mount, empty, fmtNum, ago, badge, debounce, confirmDialog, toast, shortLoc } from './ui.js';

export async function list(ctx, focusId) {
  const [{ services }, data] = await Promise.all([
    api('/api/services'),
    api(`/api/breakpoints${qs({ service: ctx.params.get('service') })}`),
  ]);
  if (!ctx.current()) return;
  const service = ctx.params.get('service') || '';
  const rows = new Map();
  const tbody = h('tbody', { 'data-rowkeys': '' });
  const select = h('select', { id: 'bp-service', onchange: () => ctx.navigate(`/breakpoints${qs({ service: select.value })}`) },
    h('option', { value: '' }, 'All services'),
    services.map((s) => h('option', { value: s.name, selected: s.name === service }, s.name)));
  const newBtn = h('button', {
    type: 'button', class: 'primary', 'data-new': '',
    onclick: () => openEditor({ service_name: service || services[0]?.name || '' }, reload),
  }, '+ New breakpoint ', h('kbd', {}, 'n'));
  const head = h('div', { class: 'page-head' }, h('h1', {}, 'Breakpoints'), h('span', { class: 'spacer' }), newBtn);
  const filters = h('div', { class: 'filters' }, h('div', { class: 'field' }, h('label', { for: 'bp-service' }, 'Service'), select));
  const bps = data.breakpoints || [];
  if (!bps.length) {
    mount(ctx.main, head, filters, empty('No breakpoints yet',
      'A breakpoint captures variables, the stack and the request at one line, without stopping the service. Pick a line on the Code page, or create one here.',
      h('p', {}, h('a', { href: '/code', class: 'button primary' }, 'Browse code'))));
  } else {
    for (const b of bps) { const r = row(b); rows.set(b.id, r); tbody.append(r.el); }
    mount(ctx.main, head, filters, h('div', { class: 'panel table-wrap' }, h('table', { id: 'breakpoints' },
      h('thead', {}, h('tr', {},
        h('th', {}, 'Location'), h('th', { class: 'hide-sm' }, 'Service'), h('th', {}, 'Condition'),
        h('th', { class: 'hide-sm' }, 'Mode'), h('th', {}, 'Captures'), h('th', { class: 'hide-sm' }, 'Status'), h('th', {}, h('span', { class: 'hidden' }, 'Actions')))),
      tbody)));
  }

  async function reload() { await list(ctx, focusId); }

  function row(initial) {
    let b = initial;
    const el = h('tr', { 'data-breakpoint': b.id });
    const update = (next) => {
      b = { ...b, ...next };
      const status = statusOf(b);
      mount(el,
        h('td', {}, h('div', { class: 'loc', title: `${b.file_path}:${b.line_number}` }, shortLoc(b.file_path, b.line_number) || '—'),
          h('div', { class: 'muted small' }, b.function_name || '', b.label && b.label !== b.function_name ? ` · ${b.label}` : '')),
        h('td', { class: 'hide-sm' }, b.service_name),
        h('td', {}, b.condition ? h('code', {}, b.condition) : h('span', { class: 'muted' }, 'always')),
        h('td', { class: 'hide-sm' }, badge(b.mode || 'snapshot')),
        h('td', { class: 'num', 'data-count': '' }, h('a', { href: `/snapshots?breakpoint_id=${enc(b.id)}` }, `${fmtNum(b.capture_count)} / ${b.max_captures ? fmtNum(b.max_captures) : '∞'}`),
          h('div', { class: 'muted small' }, ago(b.last_captured_at))),
        h('td', { class: 'hide-sm' }, badge(status.text, status.kind)),
        h('td', {}, h('div', { class: 'card-head row-actions' },
          h('label', { class: 'switch' }, h('input', {
            type: 'checkbox', checked: b.enabled, 'data-toggle': '', 'aria-label': `Enabled: ${shortLoc(b.file_path, b.line_number)}`,
            onchange: async (ev) => {
              try { update(await api(`/api/breakpoints/${enc(b.id)}`, { method: 'PATCH', body: { enabled: ev.target.checked } })); }
              catch (e) { ev.target.checked = !ev.target.checked; toast(e.message, 'err'); }
            },
          }), 'On'),
          h('button', { type: 'button', class: 'small', 'data-edit': '', onclick: () => openEditor(b, reload) }, 'Edit'),
          h('button', {
            type: 'button', class: 'small danger', 'data-delete': '', 'aria-label': `Delete breakpoint at ${shortLoc(b.file_path, b.line_number)}`,
            onclick: async () => {
              const ok = await confirmDialog({ title: 'Delete this breakpoint?', body: `${b.file_path}:${b.line_number}. SDKs stop capturing here at once; stored snapshots are kept.`, confirm: 'Delete', danger: true });
              if (!ok) return;
              try { await api(`/api/breakpoints/${enc(b.id)}`, { method: 'DELETE' }); el.remove(); rows.delete(b.id); toast('Breakpoint deleted'); }
              catch (e) { toast(e.message, 'err'); }
            },
          }, 'Delete'))));
    };
    update(b);
    return { el, update };
  }

  const live = (e) => {
    const id = e.id || e.breakpoint?.id;
    const r = rows.get(id);
    if (r) {
      if (e.deleted_at) { r.el.remove(); rows.delete(id); } else r.update(e);
    } else if (e.id && !e.deleted_at && (!service || e.service_name === service)) reload();
  };
  ctx.onLeave(on('breakpoint', live));
  ctx.onLeave(on('snapshot_captured', (e) => {
    const r = rows.get(e.breakpoint?.id);
    if (r) r.update({ capture_count: e.breakpoint.capture_count, last_captured_at: e.snapshot?.received_at });
  }));
  ctx.onLeave(on('reconnected', reload));
  if (focusId) {
    const b = bps.find((x) => x.id === focusId) || await api(`/api/breakpoints/${enc(focusId)}`).catch(() => null);
    if (b && ctx.current()) openEditor(b, reload);
  }
}

function statusOf(b) {
  if (b.deleted_at) return { text: 'deleted', kind: 'err' };
  if (!b.enabled) return { text: b.disabled_reason ? `off: ${String(b.disabled_reason).replaceAll('_', ' ')}` : 'disabled', kind: b.disabled_reason ? 'warn' : '' };
  if (b.expire_at && new Date(b.expire_at) < new Date()) return { text: 'expired', kind: 'warn' };
  return { text: 'active', kind: 'ok' };
}

const NUMBER_FIELDS = [
  ['max_captures', 'Max captures', '0 = no limit', 0, 1000000],
  ['rate_limit_per_minute', 'Rate limit / min', '0 = no limit', 0, 100000],
  ['stack_depth', 'Stack depth', 'frames kept', 1, 50],
  ['max_depth', 'Variable depth', 'nesting levels', 1, 10],
  ['max_payload_bytes', 'Max payload bytes', '256 – 1 MiB', 256, 1048576],
  ['idle_timeout_hours', 'Idle timeout (h)', 'disable when idle', 1, 8760],
];

/** The create/edit dialog. `b` has an `id` when editing. */
export function openEditor(b, onSaved) {
  const editing = Boolean(b.id);
  const field = (name, label, input, hint) => h('div', { class: 'field' }, h('label', { for: `bp-${name}` }, label), input, hint ? h('span', { class: 'hint', id: `bp-${name}-hint` }, hint) : null);
  const input = (name, attrs = {}) => h('input', { id: `bp-${name}`, name, ...attrs });
  const condHint = h('span', { class: 'hint', id: 'bp-condition-hint', 'aria-live': 'polite' }, 'An expr-lang expression over the captured variables, e.g. total > 100');
  const cond = h('textarea', { id: 'bp-condition', name: 'condition', rows: 2, spellcheck: 'false', 'aria-describedby': 'bp-condition-hint', placeholder: 'total > 100 && user.plan == "pro"' });
  cond.value = b.condition || '';
  const exprs = h('textarea', { id: 'bp-capture_expressions', name: 'capture_expressions', rows: 2, spellcheck: 'false', placeholder: 'one expression per line, e.g. len(items)' });
  exprs.value = (b.capture_expressions || []).join('\n');
  const expiry = h('select', { id: 'bp-expiry', name: 'expiry' },
    [['keep', editing ? `Keep (${b.expire_at ? new Date(b.expire_at).toLocaleString() : 'never'})` : null], ['3600', '1 hour'], ['86400', '24 hours'], ['604800', '7 days'], ['never', 'Never']]
      .filter(([, t]) => t).map(([v, t]) => h('option', { value: v, selected: v === (editing ? 'keep' : '86400') }, t)));
  const numbers = NUMBER_FIELDS.map(([name, label, hint, min, max]) => field(name, label,
    input(name, { type: 'number', min, max, step: 1, value: b[name] ?? '', placeholder: 'default' }), hint));
  const errorBox = h('p', { class: 'form-error hidden', role: 'alert' });
  const title = editing ? 'Edit breakpoint' : 'New breakpoint';
  const form = h('form', { method: 'dialog', novalidate: true },
    h('h2', { id: 'bp-title' }, title),
    errorBox,
    h('div', { class: 'grid3' },
      field('service_name', 'Service', input('service_name', { value: b.service_name || '', required: true, readonly: editing, autocomplete: 'off' })),
      h('div', { class: 'span2' }, field('file_path', 'File', input('file_path', { value: b.file_path || '', required: true, class: 'mono', autocomplete: 'off' }))),
      field('line_number', 'Line', input('line_number', { type: 'number', min: 1, value: b.line_number || '', required: true })),
      field('function_name', 'Function', input('function_name', { value: b.function_name || '', class: 'mono', autocomplete: 'off' })),
      field('label', 'Label', input('label', { value: b.label || '', class: 'mono', autocomplete: 'off', placeholder: 'defaults to the function name' }))),
    h('div', { class: 'field' }, h('label', { for: 'bp-condition' }, 'Condition'), cond, condHint),
    h('div', { class: 'grid3' },
      field('mode', 'Mode', h('select', { id: 'bp-mode', name: 'mode' },
        h('option', { value: 'snapshot', selected: b.mode !== 'logpoint' }, 'Snapshot (variables + stack)'),
        h('option', { value: 'logpoint', selected: b.mode === 'logpoint' }, 'Logpoint (expressions only)'))),
      field('expiry', 'Expires in', expiry),
      h('div', { class: 'field' }, h('span', { class: 'hint' }, ' '), h('label', { class: 'switch' }, h('input', { type: 'checkbox', id: 'bp-enabled', name: 'enabled', checked: b.enabled !== false }), 'Enabled'))),
    h('div', { class: 'field' }, h('label', { for: 'bp-capture_expressions' }, 'Capture expressions'), exprs, h('span', { class: 'hint' }, 'Evaluated at the line and stored with the snapshot; a logpoint stores only these.')),
    h('fieldset', {}, h('legend', {}, 'Limits'), h('div', { class: 'grid3' }, numbers)),
    h('div', { class: 'actions' },
      editing && b.capture_count ? h('label', { class: 'switch small' }, h('input', { type: 'checkbox', id: 'bp-reset' }), 'Reset capture count') : null,
      h('span', { class: 'spacer' }),
      h('button', { type: 'button', value: 'cancel', onclick: () => dlg.close() }, 'Cancel'),
      h('button', { type: 'submit', class: 'primary', id: 'bp-save' }, editing ? 'Save' : 'Create breakpoint')));
  const dlg = h('dialog', { 'aria-labelledby': 'bp-title', id: 'bp-dialog' }, form);
  document.body.append(dlg);
  dlg.addEventListener('close', () => dlg.remove());

  let condValid = true;
  const validate = debounce(async () => {
    const c = cond.value.trim();
    if (!c) { condValid = true; cond.removeAttribute('aria-invalid'); condHint.className = 'hint'; condHint.textContent = 'No condition: every hit is captured (within the limits).'; return; }
    try {
      const r = await api('/api/conditions/validate', { method: 'POST', body: { condition: c } });
      if (c !== cond.value.trim()) return;
      condValid = r.valid;
      cond.setAttribute('aria-invalid', r.valid ? 'false' : 'true');
      condHint.className = `hint ${r.valid ? 'ok' : 'bad'}`;
      condHint.textContent = r.valid
        ? `✓ Valid · evaluated ${r.condition_eval === 'server-only' ? 'by the server at check-in' : 'in the SDK'}`
        : `✗ ${r.error}`;
    } catch (e) { condHint.textContent = e.message; }
  }, 250);
  cond.addEventListener('input', validate);
  if (cond.value) validate();

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const v = (name) => form.querySelector(`[name="${name}"]`).value.trim();
    const body = {
      file_path: v('file_path'),
      line_number: Number(v('line_number')),
      function_name: v('function_name'),
      label: v('label'),
      condition: cond.value.trim() || null,
      mode: v('mode'),
      capture_expressions: exprs.value.split('\n').map((s) => s.trim()).filter(Boolean),
      enabled: form.querySelector('#bp-enabled').checked,
    };
    if (!editing) body.service_name = v('service_name');
    for (const [name] of NUMBER_FIELDS) {
      const raw = v(name);
      if (raw !== '') body[name] = Number(raw);
      else if (editing && b[name] !== null && b[name] !== undefined) body[name] = null;
    }
    const exp = expiry.value;
    if (exp === 'never') body.expire_at = null;
    else if (exp !== 'keep') body.expires_in_seconds = Number(exp);
    if (form.querySelector('#bp-reset')?.checked) body.reset_capture_count = true;
    const missing = ['service_name', 'file_path', 'line_number'].filter((n) => !v(n));
    if (missing.length || !condValid) {
      errorBox.textContent = missing.length ? `Required: ${missing.join(', ').replaceAll('_', ' ')}.` : 'Fix the condition first.';
      errorBox.classList.remove('hidden');
      return;
    }
    try {
      const saved = editing
        ? await api(`/api/breakpoints/${enc(b.id)}`, { method: 'PATCH', body })
        : await api('/api/breakpoints', { method: 'POST', body });
      dlg.close();
      toast(editing ? 'Breakpoint saved' : `Breakpoint set at ${shortLoc(saved.file_path, saved.line_number)}`);
      onSaved?.(saved);
    } catch (e) {
      errorBox.textContent = e.message;
      errorBox.classList.remove('hidden');
    }
  });
  dlg.showModal();
  (editing ? cond : form.querySelector(b.file_path ? '#bp-condition' : '#bp-service_name')).focus();
}
