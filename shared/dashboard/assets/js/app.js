// The dashboard's entry point: a tiny client-side router over the server-served shell,
// keyboard shortcuts, and the live stream.

import { connect } from './live.js';
import { toast } from './ui.js';
import { api } from './api.js';
import * as services from './services.js';
import * as code from './code.js';
import * as breakpoints from './breakpoints.js';
import * as snapshots from './snapshots.js';
import * as traces from './traces.js';

const routes = [
  [/^\/services\/?$/, services.list, 'services', 'Services'],
  [/^\/code\/?$/, code.page, 'code', 'Code'],
  [/^\/breakpoints\/?$/, breakpoints.list, 'breakpoints', 'Breakpoints'],
  [/^\/breakpoints\/([^/]+)$/, breakpoints.list, 'breakpoints', 'Breakpoint'],
  [/^\/snapshots\/?$/, snapshots.list, 'snapshots', 'Snapshots'],
  [/^\/snapshots\/([^/]+)$/, snapshots.detail, 'snapshots', 'Snapshot'],
  [/^\/traces\/?$/, traces.list, 'traces', 'Traces'],
  [/^\/traces\/([^/]+)$/, traces.detail, 'traces', 'Trace'],
];

let cleanups = [];
let renderId = 0;

/** Context handed to a page: where to render, and how to register cleanups. */
function context(main, id) {
  return {
    main,
    params: new URLSearchParams(location.search),
    onLeave: (fn) => cleanups.push(fn),
    current: () => id === renderId,
    navigate,
  };
}

export async function render() {
  for (const fn of cleanups) { try { fn(); } catch { /* ignore */ } }
  cleanups = [];
  const id = ++renderId;
  const main = document.getElementById('main');
  const path = location.pathname;
  const match = routes.find(([re]) => re.test(path));
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (match && a.dataset.nav === match[2]) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (!match) {
    main.replaceChildren();
    main.textContent = 'Not found.';
    return;
  }
  const [re, page, , title] = match;
  document.title = `${title} · Sightline`;
  const args = path.match(re).slice(1).map(decodeURIComponent);
  main.setAttribute('aria-busy', 'true');
  try {
    await page(context(main, id), ...args);
  } catch (e) {
    if (id === renderId) {
      main.replaceChildren();
      const p = document.createElement('div');
      p.className = 'empty panel';
      p.textContent = `Could not load this page: ${e.message}`;
      main.append(p);
    }
  } finally {
    if (id === renderId) main.removeAttribute('aria-busy');
  }
}

export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  render();
  if (!replace) document.getElementById('main')?.focus({ preventScroll: true });
  window.scrollTo(0, 0);
}

// Same-origin links navigate in place.
document.addEventListener('click', (ev) => {
  const a = ev.target.closest('a[href]');
  if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith('/assets/') || url.pathname.startsWith('/api/') || a.target) return;
  ev.preventDefault();
  navigate(url.pathname + url.search);
});
window.addEventListener('popstate', render);

// Keyboard shortcuts: `/` search, `g` + letter to go, j/k/Enter in lists, `?` help.
let pendingG = 0;
document.addEventListener('keydown', (ev) => {
  const t = ev.target;
  if (ev.metaKey || ev.ctrlKey || ev.altKey) return;
  if (t instanceof HTMLElement && (t.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(t.tagName))) {
    if (ev.key === 'Escape') t.blur();
    return;
  }
  if (document.querySelector('dialog[open]')) return;
  const go = { s: '/services', c: '/code', b: '/breakpoints', n: '/snapshots', t: '/traces' };
  if (pendingG && Date.now() - pendingG < 1200 && go[ev.key]) {
    pendingG = 0;
    ev.preventDefault();
    navigate(go[ev.key]);
    return;
  }
  pendingG = 0;
  if (ev.key === 'g') { pendingG = Date.now(); return; }
  if (ev.key === '/') {
    const s = document.querySelector('[data-search]');
    if (s) { ev.preventDefault(); s.focus(); s.select?.(); }
    return;
  }
  if (ev.key === '?') { document.getElementById('help')?.showModal(); return; }
  if (ev.key === 'n') { document.querySelector('[data-new]')?.click(); return; }
  if (ev.key === 'j' || ev.key === 'k' || ev.key === 'Enter') {
    const rows = [...document.querySelectorAll('[data-rowkeys] > tr.clickable, [data-rowkeys] > .wf-row')];
    if (!rows.length) return;
    let i = rows.findIndex((r) => r.getAttribute('aria-selected') === 'true');
    if (ev.key === 'Enter') { if (i >= 0) rows[i].click(); return; }
    if (i >= 0) rows[i].removeAttribute('aria-selected');
    i = ev.key === 'j' ? Math.min(rows.length - 1, i + 1) : Math.max(0, i - 1);
    rows[i].setAttribute('aria-selected', 'true');
    rows[i].scrollIntoView({ block: 'nearest' });
    ev.preventDefault();
  }
});

document.getElementById('help-button')?.addEventListener('click', () => document.getElementById('help')?.showModal());

// Sign-out through the API when scripts run (the form still works without them).
document.getElementById('logout-form')?.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  try {
    await api('/api/session', { method: 'DELETE' });
  } catch (e) {
    toast(e.message, 'err');
    return;
  }
  location.assign('/login');
});

connect();
render();
