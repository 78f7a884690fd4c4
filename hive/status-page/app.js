// The hive status page: a card per worker, coloured by state, kept live by
// one WatchWorkers stream (a snapshot, then every change; no polling). The
// recent-events panel is re-read when the stream shows a state change.
// The read token is asked for once and kept in sessionStorage: it lives as
// long as the tab and is never part of the page the hive serves.

import { backoffMs, callServerStream, callUnary, RpcError } from './connect.js';

const BASE = location.origin;
const REGISTRY = 'hive.v1.RegistryService';
const CONTROL = 'hive.v1.ControlService';
const CHECK_REFRESH_MS = 5000;
const BAND_TONE = { HEALTH_BAND_HEALTHY: 'ok', HEALTH_BAND_DEGRADED: 'warn', HEALTH_BAND_UNHEALTHY: 'bad', HEALTH_BAND_CRITICAL: 'bad' };
const TOKEN_KEY = 'hive.statusPage.token';

const STATES = ['healthy', 'degraded', 'unhealthy', 'stale', 'restarting', 'failed', 'pending', 'left'];
// Card colour groups: green, yellow, red, grey (and blue for pending, orange for restarting).
const TONE = { healthy: 'ok', degraded: 'warn', unhealthy: 'bad', stale: 'bad', failed: 'bad', restarting: 'busy', pending: 'new', left: 'gone' };
const SEVERITY = { failed: 7, stale: 6, restarting: 5, unhealthy: 4, degraded: 3, pending: 2, healthy: 1, left: 0 };

const $ = (id) => document.getElementById(id);

const view = {
  workers: new Map(), // workerId -> worker JSON
  cards: new Map(), // workerId -> element
  states: new Set(), // shown states; empty = all
  selector: '',
  offsetMs: 0, // hive clock minus ours
  stream: null, // AbortController of the current WatchWorkers
};

// ---- small DOM helpers (text only: nothing from the API is parsed as HTML)

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('data-')) el.setAttribute(k, v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

const stateOf = (w) => String(w.state || 'WORKER_STATE_UNSPECIFIED').replace('WORKER_STATE_', '').toLowerCase();
const num = (v) => (v === undefined || v === null ? 0 : Number(v));
const hiveNow = () => Date.now() + view.offsetMs;

function formatBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${n >= 100 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
}

function formatAge(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const hrs = Math.floor(m / 60);
  if (hrs < 24) return `${hrs}h ${m % 60}m`;
  return `${Math.floor(hrs / 24)}d ${hrs % 24}h`;
}

/** "5s", "1.500s" (protobuf JSON Duration) to milliseconds. */
const durationMs = (d) => (typeof d === 'string' && d.endsWith('s') ? Math.round(parseFloat(d) * 1000) : 0);
const formatInterval = (ms) => (ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`);

function bar(label, used, total, title) {
  const ratio = total > 0 ? Math.min(1, used / total) : 0;
  const fill = h('div', { class: `fill ${ratio >= 0.95 ? 'hot' : ratio >= 0.8 ? 'warm' : ''}` });
  fill.style.width = `${(ratio * 100).toFixed(1)}%`; // CSSOM, allowed by style-src 'self'
  return h(
    'div',
    { class: 'bar', title: title || null },
    h('span', { class: 'bar-label', text: label }),
    h('span', { class: 'bar-value', text: total > 0 ? `${formatBytes(used)} / ${formatBytes(total)}` : '-' }),
    h('div', { class: 'track', role: 'meter', 'aria-valuemin': '0', 'aria-valuemax': String(total), 'aria-valuenow': String(used), 'aria-label': label }, fill),
  );
}

// ---- cards

function lastSeenText(w) {
  if (!w.lastSeen) return 'never';
  return `${formatAge(hiveNow() - Date.parse(w.lastSeen))} ago`;
}

/** Past twice its interval with no heartbeat, but not (yet) marked stale. */
function isLate(w) {
  const interval = durationMs(w.heartbeatInterval);
  const state = stateOf(w);
  if (!w.lastSeen || !interval || !['healthy', 'degraded', 'unhealthy'].includes(state)) return false;
  return hiveNow() - Date.parse(w.lastSeen) > 2 * interval;
}

/** What the worker last said about itself; once it stopped reporting, say so. */
function detailText(w, state) {
  return ['stale', 'restarting', 'failed', 'left'].includes(state) ? `last report: ${w.statusDetail}` : w.statusDetail;
}

function renderCard(w) {
  const state = stateOf(w);
  const stats = w.stats || {};
  const bars = [];
  for (const g of stats.gpus || []) {
    const name = g.name ? ` ${g.name}` : '';
    const extra = [g.utilization !== undefined ? `util ${Math.round(g.utilization * 100)}%` : '', g.temperatureCelsius !== undefined ? `${Math.round(g.temperatureCelsius)}°C` : '']
      .filter(Boolean)
      .join(', ');
    bars.push(bar(`GPU ${g.index || 0}${g.name ? ` · ${g.name}` : ''}`, num(g.memoryUsedBytes), num(g.memoryTotalBytes), `GPU ${g.index || 0}${name}${extra ? ` (${extra})` : ''}: VRAM`));
  }
  if (num(stats.memoryTotalBytes) > 0) bars.push(bar('Memory', num(stats.memoryUsedBytes), num(stats.memoryTotalBytes)));
  for (const d of stats.disks || []) {
    const total = num(d.totalBytes);
    bars.push(bar(`Disk ${d.path}`, total - num(d.freeBytes), total, `${d.path}: ${formatBytes(num(d.freeBytes))} free`));
  }
  const labels = Object.entries(w.labels || {}).sort(([a], [b]) => a.localeCompare(b));
  const failed = (stats.collectors || []).filter((c) => !c.success).map((c) => c.name);
  const card = h(
    'article',
    { class: `card tone-${TONE[state] || 'gone'}${isLate(w) ? ' late' : ''}`, 'data-worker': w.workerId, 'data-state': state },
    h('header', {}, h('h3', { text: w.workerId, title: w.workerId }), h('span', { class: 'badge', text: state.toUpperCase() })),
    w.statusDetail ? h('p', { class: 'detail', text: detailText(w, state), title: w.statusDetail }) : null,
    h(
      'dl',
      { class: 'meta' },
      h('dt', { text: 'last seen' }),
      h('dd', { class: 'age', 'data-last-seen': w.lastSeen || '', text: lastSeenText(w) }),
      h('dt', { text: 'interval' }),
      h('dd', { text: formatInterval(durationMs(w.heartbeatInterval)) }),
      h('dt', { text: 'stream' }),
      h('dd', { class: w.connected ? 'on' : 'off', text: w.connected ? 'open' : 'closed', title: w.connected ? 'the agent has its heartbeat stream open' : 'no heartbeat stream open' }),
      stats.load1 !== undefined ? [h('dt', { text: 'load' }), h('dd', { text: Number(stats.load1).toFixed(2) })] : null,
    ),
    bars.length ? h('div', { class: 'bars' }, bars) : h('p', { class: 'muted', text: 'no stats yet' }),
    failed.length ? h('p', { class: 'collector-failures', text: `collectors failing: ${failed.join(', ')}` }) : null,
    labels.length ? h('ul', { class: 'labels' }, labels.map(([k, v]) => h('li', { text: `${k}=${v}` }))) : null,
  );
  return card;
}

function visible(w) {
  return view.states.size === 0 || view.states.has(stateOf(w));
}

function renderGrid() {
  const grid = $('grid');
  const ids = [...view.workers.keys()].sort();
  const shown = ids.filter((id) => visible(view.workers.get(id)));
  const shownSet = new Set(shown);
  // Keep existing elements where they are; put them in order.
  let prev = null;
  for (const id of shown) {
    let el = view.cards.get(id);
    if (!el) {
      el = renderCard(view.workers.get(id));
      view.cards.set(id, el);
    }
    const expected = prev ? prev.nextSibling : grid.firstChild;
    if (expected !== el) grid.insertBefore(el, expected);
    prev = el;
  }
  for (const [id, el] of view.cards) {
    if (!shownSet.has(id)) {
      el.remove();
      view.cards.delete(id);
    }
  }
  $('empty').hidden = shown.length > 0;
  $('empty').textContent = view.workers.size === 0 ? (view.selector ? 'No worker matches the label selector.' : 'No workers registered yet.') : 'No worker in the selected states.';
  renderSummary();
}

function updateWorker(w) {
  view.workers.set(w.workerId, w);
  const old = view.cards.get(w.workerId);
  if (old && visible(w)) {
    const fresh = renderCard(w);
    old.replaceWith(fresh);
    view.cards.set(w.workerId, fresh);
  } else renderGrid();
}

function renderSummary() {
  const counts = {};
  for (const w of view.workers.values()) counts[stateOf(w)] = (counts[stateOf(w)] || 0) + 1;
  const box = $('states');
  box.replaceChildren(
    ...STATES.map((s) =>
      h(
        'button',
        { type: 'button', class: `chip tone-${TONE[s]}${view.states.has(s) ? ' on' : ''}${counts[s] ? '' : ' zero'}`, 'data-state': s, 'aria-pressed': view.states.has(s) ? 'true' : 'false' },
        `${s} `,
        h('b', { text: String(counts[s] || 0) }),
      ),
    ),
  );
  $('count').textContent = `${view.workers.size} worker${view.workers.size === 1 ? '' : 's'}`;
  const worst = [...view.workers.values()].reduce((a, w) => Math.max(a, SEVERITY[stateOf(w)] || 0), 0);
  document.title = `${worst >= 4 ? '● ' : ''}hive status`;
}

function tick() {
  for (const el of document.querySelectorAll('.age')) {
    const at = el.getAttribute('data-last-seen');
    if (at) el.textContent = `${formatAge(hiveNow() - Date.parse(at))} ago`;
  }
  for (const [id, el] of view.cards) el.classList.toggle('late', isLate(view.workers.get(id)));
}

// ---- events panel

let eventsTimer = null;
function refreshEventsSoon() {
  clearTimeout(eventsTimer);
  eventsTimer = setTimeout(refreshEvents, 300);
}

async function refreshEvents() {
  try {
    const res = await callUnary(BASE, `${REGISTRY}/ListEvents`, { pageSize: 30 }, { token: token() });
    const list = $('events');
    list.replaceChildren(
      ...(res.events || []).map((e) => {
        const to = String(e.toState || '').replace('WORKER_STATE_', '').toLowerCase();
        const from = String(e.fromState || '').replace('WORKER_STATE_', '').toLowerCase();
        const change = to && to !== 'unspecified' && from !== to ? `${from && from !== 'unspecified' ? `${from} → ` : ''}${to}` : '';
        return h(
          'li',
          { class: `event tone-${TONE[to] || 'none'}`, 'data-kind': e.kind },
          h('time', { datetime: e.time, title: e.time, text: new Date(e.time).toLocaleTimeString() }),
          h('span', { class: 'event-worker', text: e.workerId }),
          h('span', { class: 'event-kind', text: e.kind }),
          change ? h('span', { class: 'event-change', text: change }) : null,
          e.reason ? h('span', { class: 'event-reason', text: e.reason }) : null,
        );
      }),
    );
    $('events-empty').hidden = (res.events || []).length > 0;
  } catch (err) {
    if (isAuthError(err)) return askForToken(err.message);
    $('events-empty').hidden = false;
    $('events-empty').textContent = `Events unavailable: ${err.message}`;
  }
}

// ---- last health check (a read token may list them; re-read every few seconds)

async function refreshCheck() {
  if (!token()) return;
  try {
    const res = await callUnary(BASE, `${CONTROL}/ListHealthChecks`, { pageSize: 1 }, { token: token() });
    const c = (res.checks || [])[0];
    $('check-empty').hidden = !!c;
    if (!c) return $('check').replaceChildren();
    const running = c.state === 'HEALTH_CHECK_STATE_RUNNING';
    const band = String(c.band || '').replace('HEALTH_BAND_', '').toLowerCase();
    const trigger = String(c.trigger || '').replace('HEALTH_CHECK_TRIGGER_', '').toLowerCase();
    $('check').replaceChildren(
      h('div', { class: 'check-head' },
        h('span', { class: 'check-id', text: c.checkId }), ' ',
        h('time', { datetime: c.startedAt, title: c.startedAt, text: new Date(c.startedAt).toLocaleString() }), ' ',
        h('span', { class: 'muted', text: `(${trigger}${c.labelSelector ? `, ${c.labelSelector}` : ''})` })),
      running
        ? h('div', { class: 'check-score', text: `running: ${c.completed || 0}/${c.total || 0} answered` })
        : h('div', { class: `check-score tone-${BAND_TONE[c.band] || 'none'}`, text: `score ${Number(c.score || 0).toFixed(2)} ${band}, ${c.failed || 0} of ${c.total || 0} failed` }),
      c.summary ? h('div', { class: 'check-summary', text: c.summary }) : null,
    );
  } catch (err) {
    if (isAuthError(err)) return;
    $('check-empty').hidden = false;
    $('check-empty').textContent = `Health checks unavailable: ${err.message}`;
  }
}

// ---- the live stream

function setConnection(state, text) {
  const el = $('connection');
  el.dataset.state = state;
  el.textContent = text;
}

const isAuthError = (err) => err instanceof RpcError && (err.code === 'unauthenticated' || err.code === 'permission_denied');

async function watchLoop() {
  view.stream?.abort();
  const ctl = new AbortController();
  view.stream = ctl;
  let attempt = 0;
  while (!ctl.signal.aborted) {
    setConnection('connecting', attempt ? 'reconnecting…' : 'connecting…');
    const request = view.selector ? { labelSelector: view.selector } : {};
    const pending = new Map();
    let synced = false;
    try {
      for await (const msg of callServerStream(BASE, `${REGISTRY}/WatchWorkers`, request, { token: token(), signal: ctl.signal })) {
        if (msg.hiveTime) view.offsetMs = Date.parse(msg.hiveTime) - Date.now();
        let stateChanged = false;
        for (const c of msg.changes || []) {
          const w = c.worker;
          if (!w) continue;
          if (!synced) {
            pending.set(w.workerId, w);
            continue;
          }
          const before = view.workers.get(w.workerId);
          if (c.type === 'WORKER_CHANGE_TYPE_REMOVED') {
            view.workers.delete(w.workerId);
            stateChanged = true;
            renderGrid();
          } else {
            if (!before || stateOf(before) !== stateOf(w)) stateChanged = true;
            updateWorker(w);
          }
        }
        if (!synced && msg.synced) {
          synced = true;
          attempt = 0;
          // A fresh snapshot replaces whatever the page showed before.
          view.workers = pending;
          for (const el of view.cards.values()) el.remove();
          view.cards.clear();
          renderGrid();
          setConnection('live', 'live');
          $('filter-error').hidden = true;
          refreshEvents();
          refreshCheck();
        } else if (stateChanged) {
          renderSummary();
          refreshEventsSoon();
        }
      }
      // The hive ended the stream (shutting down): reconnect.
    } catch (err) {
      if (ctl.signal.aborted) return;
      if (isAuthError(err)) {
        setConnection('error', 'token refused');
        return askForToken(err.message);
      }
      if (err instanceof RpcError && err.code === 'invalid_argument') {
        $('filter-error').hidden = false;
        $('filter-error').textContent = err.message;
        setConnection('error', 'bad filter');
        return;
      }
      setConnection('down', `disconnected: ${err.message}`);
    }
    const delay = 250 + backoffMs(attempt++, 500, 30000);
    await new Promise((resolve) => {
      const t = setTimeout(resolve, delay);
      ctl.signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
    });
  }
}

// ---- token

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

function askForToken(problem) {
  view.stream?.abort();
  sessionStorage.removeItem(TOKEN_KEY);
  setConnection('error', 'no token');
  const dialog = $('login');
  $('login-error').textContent = problem ? `The hive refused the token: ${problem}` : '';
  $('login-error').hidden = !problem;
  if (!dialog.open) dialog.showModal();
  $('token').focus();
}

function start() {
  if (!token()) return askForToken();
  watchLoop();
}

// ---- wiring

$('login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const value = $('token').value.trim();
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  $('token').value = '';
  $('login').close();
  start();
});
$('login').addEventListener('cancel', (ev) => ev.preventDefault()); // the page is useless without a token

$('forget').addEventListener('click', () => {
  view.workers.clear();
  renderGrid();
  $('events').replaceChildren();
  askForToken();
});

$('states').addEventListener('click', (ev) => {
  const chip = ev.target.closest('button[data-state]');
  if (!chip) return;
  const s = chip.dataset.state;
  if (view.states.has(s)) view.states.delete(s);
  else view.states.add(s);
  renderGrid();
});

$('filter-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const value = $('selector').value.trim();
  if (value === view.selector) return;
  view.selector = value;
  if (token()) watchLoop();
});

setInterval(tick, 1000);
setInterval(refreshCheck, CHECK_REFRESH_MS);
start();
