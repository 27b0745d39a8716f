// Small DOM helpers shared by every page. Text is always set with textContent, never HTML.

/** Creates an element: h('a', {href: '/x', class: 'y', onclick: fn}, 'text', child, ...). */
export function h(tag, attrs, ...children) {
  const el = tag.startsWith('svg:')
    ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value' && 'value' in el) el.value = v;
    else if (k === 'checked') el.checked = Boolean(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces the children of an element. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function toast(message, kind) {
  const box = document.getElementById('toasts');
  if (!box) return;
  const t = h('div', { class: `toast ${kind || ''}` }, message);
  box.append(t);
  setTimeout(() => t.remove(), kind === 'err' ? 7000 : 3500);
}

/** A modal confirmation; resolves true when confirmed. */
export function confirmDialog({ title, body, confirm, danger }) {
  return new Promise((resolve) => {
    const dlg = h('dialog', { 'aria-labelledby': 'confirm-title', class: 'confirm' });
    const form = h('form', { method: 'dialog' },
      h('h2', { id: 'confirm-title' }, title),
      h('p', {}, body),
      h('div', { class: 'actions' },
        h('button', { value: 'cancel', type: 'submit' }, 'Cancel'),
        h('button', { value: 'ok', type: 'submit', class: danger ? 'danger solid' : 'primary' }, confirm)));
    dlg.append(form);
    dlg.addEventListener('close', () => { resolve(dlg.returnValue === 'ok'); dlg.remove(); });
    document.body.append(dlg);
    dlg.showModal();
    dlg.querySelector('button[value="cancel"]').focus();
  });
}

/** An empty state: what this page is for and what to do next. */
export function empty(title, text, ...extra) {
  return h('div', { class: 'empty panel', 'data-empty': '' }, h('h2', {}, title), h('p', {}, text), ...extra);
}

export function fmtNum(n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  return Number(n).toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined) return '–';
  if (ms < 1) return `${(ms * 1000).toFixed(0)} µs`;
  if (ms < 1000) return `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
}

export function fmtPct(x) {
  if (x === null || x === undefined) return '–';
  return `${(x * 100).toFixed(x < 0.1 && x > 0 ? 1 : 0)}%`;
}

/** "3 min ago" with the exact time in a title attribute. */
export function ago(ts) {
  if (!ts) return h('span', { class: 'muted' }, 'never');
  const d = new Date(ts);
  const s = Math.round((Date.now() - d.getTime()) / 1000);
  let text;
  if (s < 5) text = 'just now';
  else if (s < 60) text = `${s} s ago`;
  else if (s < 3600) text = `${Math.floor(s / 60)} min ago`;
  else if (s < 86400) text = `${Math.floor(s / 3600)} h ago`;
  else text = d.toLocaleDateString();
  return h('time', { datetime: d.toISOString(), title: d.toLocaleString() }, text);
}

/** An inline SVG sparkline of `values` (a line over a light area). */
export function sparkline(values, { kind = '', label = '' } = {}) {
  const w = 120, hgt = 28;
  const svg = h('svg:svg', { viewBox: `0 0 ${w} ${hgt}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': label });
  if (!values.length) return svg;
  const max = Math.max(...values, 1e-9);
  const step = values.length > 1 ? w / (values.length - 1) : w;
  const pts = values.map((v, i) => [i * step, hgt - 2 - (v / max) * (hgt - 4)]);
  const line = pts.map(([x, y], i) => `${i ? 'L' : 'M'}${x.toFixed(1)},${y.toFixed(1)}`).join('');
  svg.append(h('svg:path', { d: `${line}L${w},${hgt}L0,${hgt}Z`, class: `spark-area ${kind}` }));
  svg.append(h('svg:path', { d: line, class: `spark-line ${kind}`, 'vector-effect': 'non-scaling-stroke' }));
  return svg;
}

/** Horizontal bars of `{label: count}` (drops by reason). */
export function bars(counts, { ok = false } = {}) {
  const entries = Object.entries(counts || {}).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
  const max = Math.max(1, ...entries.map(([, n]) => n));
  return h('div', { class: 'bars' }, entries.map(([k, n]) => {
    const fill = h('div', { class: `bar-fill ${ok ? 'ok' : ''}` });
    fill.style.width = `${(n / max) * 100}%`;
    return h('div', { class: 'bar-row' }, h('span', {}, k.replaceAll('_', ' ')), h('div', { class: 'bar-track' }, fill), h('span', { class: 'num' }, fmtNum(n)));
  }));
}

/** A stable colour per service name. */
export function serviceColor(name) {
  let x = 0;
  for (const c of String(name)) x = (x * 31 + c.charCodeAt(0)) >>> 0;
  const palette = ['#6366f1', '#0ea5e9', '#10b981', '#f97316', '#a855f7', '#14b8a6', '#eab308', '#ec4899', '#64748b', '#22c55e'];
  return palette[x % palette.length];
}

export function badge(text, kind) {
  return h('span', { class: `badge ${kind || ''}` }, text);
}

/** Debounces a function by `ms`. */
export function debounce(fn, ms) {
  let t;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

/** j/k/Enter navigation over the clickable rows of a table. */
export function rowKeys(tbody) {
  tbody.dataset.rowkeys = '';
}

export function shortLoc(file, line) {
  if (!file) return '';
  const parts = String(file).split(/[\\/]/);
  const tail = parts.slice(-2).join('/');
  return line ? `${tail}:${line}` : tail;
}
