// Pigeon web UI: the chat in a browser. Plain ES module, no framework, no
// build step. Everything a peer sends (nicks, groups, texts, file names) is
// put into the page as text (textContent / text nodes), never as markup;
// control and bidirectional characters are shown as visible markers.

const PAGE = 150; // messages per history page
const JUMP_PAGES = 50; // older pages loaded at most to reach a search hit
const READCHECKOPT = 0x00100000;
const EVERYONE = 'everyone';
const CLIENTS = { pigeon: 'Pigeon', ipmsg: 'IP Messenger', feiq: 'FeiQ', iptux: 'iptux' };
const MARKS = {
  sending: '⋯ sending',
  delivered: '✓ delivered',
  read: '✓✓ read',
  queued: '⏳ queued',
  failed: '✗ failed',
  sent: '✓ sent',
};

const $ = (id) => document.getElementById(id);
const ui = {
  body: document.body,
  main: document.querySelector('.main'),
  log: $('log'),
  peers: $('peers'),
  filter: $('filter'),
  sidebar: $('sidebar'),
  scrim: $('scrim'),
  panelToggle: $('panel-toggle'),
  chat: $('chat'),
  title: $('conv-title'),
  sub: $('conv-sub'),
  to: $('conv-to'),
  shake: $('shake-btn'),
  info: $('info-btn'),
  msg: $('message'),
  send: $('send'),
  sealed: $('sealed'),
  files: $('files'),
  attach: $('attach-btn'),
  chips: $('chips'),
  pathBtn: $('path-btn'),
  pathRow: $('path-row'),
  pathInput: $('path-input'),
  hint: $('compose-hint'),
  composer: $('composer'),
  drop: $('drop-zone'),
  toBottom: $('to-bottom'),
  toasts: $('toasts'),
  conn: $('conn'),
  search: $('search'),
  searchPanel: $('search-panel'),
  searchTitle: $('search-title'),
  results: $('search-results'),
  help: $('help'),
  away: $('away'),
  awayText: $('away-text'),
  meNick: $('me-nick'),
  meAddr: $('me-addr'),
  meDot: $('me-dot'),
  version: $('version'),
  marks: $('marks'),
  marksText: $('marks-text'),
  notify: $('notify-btn'),
  blocked: $('blocked'),
};

// ---- small helpers -------------------------------------------------------

/** An element; `kids` strings become text nodes (never markup). */
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const k in attrs) {
      const v = attrs[k];
      if (v == null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'on') for (const ev in v) el.addEventListener(ev, v[ev]);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const c of kids) if (c != null && c !== false) el.append(c);
  return el;
}

// C0/C1 controls (but \n and \t), DEL, and the bidirectional controls.
const CONTROLS = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
const marker = (c) => `⟨U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, '0')}⟩`;

/** Peer text made safe to show: line ends normalised, controls as markers. */
function clean(s) {
  return String(s ?? '')
    .replace(/\r\n?|[\u2028\u2029]/g, '\n')
    .replace(CONTROLS, marker);
}
/** One line of peer text (a nick, a group, a file name). */
const line = (s) => clean(s).replace(/\n/g, ' ⏎ ');

function human(n) {
  n = Number(n) || 0;
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let i = -1;
  do {
    n /= 1024;
    i++;
  } while (n >= 1024 && i < units.length - 1);
  return `${n < 10 ? n.toFixed(1) : Math.round(n)} ${units[i]}`;
}

const TF = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const DF = new Intl.DateTimeFormat(undefined, { weekday: 'short', day: 'numeric', month: 'short', year: 'numeric' });
const DFL = new Intl.DateTimeFormat(undefined, { weekday: 'long', day: 'numeric', month: 'long', year: 'numeric' });
const FF = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
function toDate(s) {
  const d = s instanceof Date ? s : new Date(s);
  return isNaN(d) ? new Date() : d;
}
const dayKey = (d) => `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;

function splitKey(key) {
  const i = key.indexOf('@');
  return i < 0 ? { user: key, host: '' } : { user: key.slice(0, i), host: key.slice(i + 1) };
}
const keyOf = (p) => `${p.user}@${p.host}`;

function randomBatch() {
  const abc = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const r = crypto.getRandomValues(new Uint8Array(16));
  let s = '';
  for (const b of r) s += abc[b % abc.length];
  return s;
}

function isEditable(el) {
  if (!el) return false;
  const t = el.tagName;
  return t === 'TEXTAREA' || (t === 'INPUT' && !['checkbox', 'radio', 'button', 'submit', 'file'].includes(el.type)) || el.isContentEditable;
}

function store(key, value) {
  try {
    if (value == null) localStorage.removeItem(key);
    else localStorage.setItem(key, JSON.stringify(value));
  } catch {
    /* private mode: nothing kept */
  }
}
function stored(key, fallback) {
  try {
    const v = localStorage.getItem(key);
    return v == null ? fallback : JSON.parse(v);
  } catch {
    return fallback;
  }
}

// ---- talking to the node ---------------------------------------------------

class ApiError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

async function call(url, init = {}) {
  let r;
  try {
    r = await fetch(url, { credentials: 'same-origin', cache: 'no-store', ...init });
  } catch (e) {
    throw new ApiError('network', `the daemon does not answer (${e.message})`);
  }
  if (r.status === 401) {
    blocked();
    throw new ApiError('unauthorized', 'open the address `pigeon web --url` prints (it carries the token)');
  }
  let body = null;
  try {
    body = await r.json();
  } catch {
    /* not JSON */
  }
  if (!body) throw new ApiError('failed', `the daemon answered HTTP ${r.status}`);
  if (!body.ok) throw new ApiError(body.code || 'failed', body.error || `HTTP ${r.status}`);
  return body;
}

const api = (req) =>
  call('/api', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(req) });

function historyUrl(key, before, limit) {
  const who = key === EVERYONE ? 'everyone=1' : `peer=${encodeURIComponent(key)}`;
  return `/api/history?${who}&limit=${limit}${before != null ? `&before=${before}` : ''}`;
}

// ---- state -------------------------------------------------------------------

const S = {
  me: null,
  peers: new Map(), // user@host -> peer (online or known)
  unread: new Map(), // user@host -> count
  broadcastsUnread: 0,
  downloadDir: '',
  maxUploadMb: 0,
  marks: new Set(),
  filter: '',
  current: stored('pigeon.conversation', EVERYONE),
  attachments: [], // chips: {name, kind: file|dir|path, size, files: [{file, rel}], path}
  drafts: stored('pigeon.drafts', {}),
  notify: stored('pigeon.notify', false),
  lastAway: stored('pigeon.away', ''),
  own: [], // our sends whose `sent` event has not come: {m, text, keys, broadcast}
  early: new Map(), // receipt id -> {peer, packet_no, status} (came before the send's answer)
  started: false,
};

/** The open conversation ('' until the first one is shown). */
let conv = newConv('');
let convGen = 0;

function newConv(key) {
  return {
    key,
    items: [], // messages and notices, oldest first
    byKey: new Map(), // dir|user@host|packet_no -> message
    byId: new Map(), // history id -> message
    byRid: new Map(), // receipt id -> message
    more: false,
    minId: null,
    maxId: 0,
    loading: true,
    loadingOlder: false,
    queue: [],
    newBelow: 0,
    newMark: null,
  };
}

// ---- status, toasts, connection -------------------------------------------

function toast(text, kind = 'info', ms) {
  const el = h('div', { class: `toast ${kind}` }, h('span', { class: 'toast-text' }, text));
  const close = h('button', { type: 'button', class: 'toast-close', 'aria-label': 'Dismiss' }, '✕');
  close.addEventListener('click', () => el.remove());
  el.append(close);
  ui.toasts.append(el);
  while (ui.toasts.childElementCount > 5) ui.toasts.firstElementChild.remove();
  setTimeout(() => el.remove(), ms ?? (kind === 'error' ? 12000 : 5000));
  return el;
}
const showError = (prefix) => (e) => {
  if (e && e.code === 'unauthorized') return;
  toast(prefix ? `${prefix}: ${e.message}` : e.message, 'error');
};

function setConn(state) {
  ui.conn.dataset.state = state;
  ui.conn.textContent = { live: 'live', connecting: 'connecting…', reconnecting: 'reconnecting…', blocked: 'no token' }[state] || state;
  ui.conn.title = state === 'live' ? 'Connected: messages come as they happen' : 'The live connection to the daemon is down; it reconnects by itself';
}

function blocked() {
  ui.blocked.hidden = false;
  setConn('blocked');
  if (es) {
    es.close();
    es = null;
  }
}

function updateTitle() {
  let n = S.broadcastsUnread;
  for (const c of S.unread.values()) n += c;
  document.title = n > 0 ? `(${n}) Pigeon` : 'Pigeon';
}

// ---- peers ---------------------------------------------------------------------

function peerFrom(p, online, old) {
  return {
    ...(old || {}),
    user: p.user,
    host: p.host,
    nick: p.nick ?? old?.nick ?? p.user,
    group: p.group ?? old?.group ?? '',
    addr: p.addr ?? old?.addr ?? '',
    client: p.client ?? old?.client ?? 'unknown',
    away: online ? !!p.away : false,
    online,
    encrypts: p.encrypts ?? old?.encrypts ?? false,
    key: p.key !== undefined ? p.key : old?.key ?? null,
    last_seen: p.last_seen ?? old?.last_seen ?? null,
  };
}

function applyState(s) {
  S.me = s.me;
  S.downloadDir = s.download_dir || '';
  S.maxUploadMb = s.max_upload_mb || 0;
  const peers = new Map();
  for (const p of s.known || []) peers.set(keyOf(p), peerFrom(p, false, S.peers.get(keyOf(p))));
  for (const p of s.peers || []) {
    const k = keyOf(p);
    const had = peers.get(k);
    if (had && had.online) {
      // Two machines share this user@host: send to them by address.
      had.twins = (had.twins || []).concat(p.addr);
      continue;
    }
    const np = peerFrom(p, true, S.peers.get(k));
    np.twins = null;
    peers.set(k, np);
  }
  S.peers = peers;
  S.unread = new Map((s.unread || []).filter((u) => u.count > 0).map((u) => [u.peer, u.count]));
  S.broadcastsUnread = s.broadcasts_unread || 0;
  for (const k of [...S.marks]) if (!peers.has(k)) S.marks.delete(k);
  renderMe();
  ui.version.textContent = `Pigeon ${s.version || ''} · downloads go to ${s.download_dir || '?'}`;
  renderPeers();
  renderHeader();
  updateTitle();
}

async function loadState() {
  const s = await call('/api/state');
  applyState(s);
  return s;
}

function upsertPeer(p, online, arrived = false) {
  const k = keyOf(p);
  const old = S.peers.get(k);
  if (!online && old && old.online && old.twins && old.twins.length) {
    // One of two machines of this name left.
    if (old.addr === p.addr) old.addr = old.twins.shift();
    else old.twins = old.twins.filter((a) => a !== p.addr);
    if (!old.twins.length) old.twins = null;
  } else if (arrived && old && old.online && old.addr && p.addr && old.addr !== p.addr && !(old.twins || []).includes(p.addr)) {
    // A second machine of this name.
    old.twins = (old.twins || []).concat(p.addr);
  } else {
    const np = peerFrom(p, online, old);
    if (!online) {
      np.last_seen = new Date().toISOString();
      np.absence = null;
      S.marks.delete(k);
    }
    S.peers.set(k, np);
  }
  schedulePeers();
  if (k === conv.key) renderHeader();
}

function nickOf(key) {
  if (key === EVERYONE) return 'Everyone';
  const p = S.peers.get(key);
  return p ? p.nick || p.user : splitKey(key).user;
}

/** What `send` takes for a peer: user@host, or its address when two machines share the name. */
function target(key) {
  const p = S.peers.get(key);
  if (p && p.online && p.twins && p.twins.length && p.addr) return p.addr.replace(/:\d+$/, '');
  return key;
}

function unreadOf(key) {
  return key === EVERYONE ? S.broadcastsUnread : S.unread.get(key) || 0;
}

function sortedPeers() {
  const list = [...S.peers.entries()];
  const coll = new Intl.Collator(undefined, { sensitivity: 'base', numeric: true });
  list.sort(([, a], [, b]) => {
    if (a.online !== b.online) return a.online ? -1 : 1;
    if (a.online) {
      const g = coll.compare(a.group || '\uffff', b.group || '\uffff');
      if (g) return g;
    }
    return coll.compare(a.nick || a.user, b.nick || b.user) || coll.compare(a.user + a.host, b.user + b.host);
  });
  return list;
}

function matches(key, p, f) {
  if (!f) return true;
  return [p.nick, p.user, p.host, p.group, p.addr, key, CLIENTS[p.client] || ''].some((s) => String(s || '').toLowerCase().includes(f));
}

/** The keys listed (Everyone first), in order. */
function visibleKeys() {
  const f = S.filter.trim().toLowerCase();
  const keys = [EVERYONE];
  for (const [k, p] of sortedPeers()) if (matches(k, p, f)) keys.push(k);
  return keys;
}

function peerLabel(key, p) {
  const n = unreadOf(key);
  const parts = [];
  if (key === EVERYONE) {
    parts.push('Everyone (broadcasts)');
  } else {
    parts.push(`${line(p.nick || p.user)} (${line(key)}, ${line(p.addr || 'no address')})`);
    parts.push(p.online ? (p.away ? 'away' : 'online') : 'offline');
    parts.push(CLIENTS[p.client] || 'unknown client');
    if (p.group) parts.push(`group ${line(p.group)}`);
  }
  if (n) parts.push(`${n} unread`);
  if (S.marks.has(key)) parts.push('marked');
  return parts.join(', ');
}

let peersFrame = 0;
function schedulePeers() {
  if (!peersFrame) peersFrame = requestAnimationFrame(() => {
    peersFrame = 0;
    renderPeers();
  });
}

function renderPeers() {
  const focusedKey = ui.peers.contains(document.activeElement) ? document.activeElement.closest('[data-peer]')?.dataset.peer : null;
  const frag = document.createDocumentFragment();
  const f = S.filter.trim().toLowerCase();
  let shown = 0;
  frag.append(peerItem(EVERYONE, null));
  for (const [k, p] of sortedPeers()) {
    if (!matches(k, p, f)) continue;
    frag.append(peerItem(k, p));
    shown++;
  }
  if (!shown) {
    frag.append(h('li', { class: 'peers-empty', role: 'presentation' }, f ? 'No peer matches the filter.' : 'Nobody else is on the LAN yet.'));
  }
  ui.peers.replaceChildren(frag);
  // One tab stop: the open conversation's row (or the first).
  const cur = ui.peers.querySelector(`[data-peer="${CSS.escape(conv.key)}"]`) || ui.peers.firstElementChild;
  if (cur) cur.tabIndex = 0;
  if (focusedKey) ui.peers.querySelector(`[data-peer="${CSS.escape(focusedKey)}"]`)?.focus();
  renderMarks();
}

function peerItem(key, p) {
  const everyone = key === EVERYONE;
  const n = unreadOf(key);
  const status = everyone ? 'everyone' : p.online ? (p.away ? 'away' : 'online') : 'offline';
  const li = h('li', {
    role: 'option',
    class: `peer ${status}${key === conv.key ? ' current' : ''}${S.marks.has(key) ? ' marked' : ''}`,
    'data-peer': key,
    'aria-selected': key === conv.key ? 'true' : 'false',
    'aria-label': peerLabel(key, p),
    tabindex: '-1',
  });
  if (everyone) {
    li.append(h('span', { class: 'mark-slot', 'aria-hidden': 'true' }), h('span', { class: 'avatar star', 'aria-hidden': 'true' }, '★'));
    li.append(h('span', { class: 'peer-main' }, h('span', { class: 'nick' }, 'Everyone'), h('span', { class: 'peer-sub' }, 'broadcasts to the whole LAN')));
  } else {
    const box = h('input', { type: 'checkbox', class: 'mark', tabindex: '-1', 'aria-label': `Mark ${line(p.nick || p.user)} (${line(key)})`, title: 'Mark to send to several peers (Space)' });
    box.checked = S.marks.has(key);
    li.append(h('span', { class: 'mark-slot' }, box));
    li.append(h('span', { class: `avatar dot ${status}`, 'aria-hidden': 'true' }, p.online ? (p.away ? '◐' : '●') : '○'));
    const sub = [CLIENTS[p.client] || 'unknown client'];
    if (p.group) sub.unshift(line(p.group));
    sub.push(line(p.addr || ''));
    if (!p.online && p.last_seen) sub.push(`seen ${DF.format(toDate(p.last_seen))}`);
    li.append(
      h('span', { class: 'peer-main' },
        h('span', { class: 'nick' }, line(p.nick || p.user), p.away ? h('span', { class: 'away-tag' }, ' away') : null),
        h('span', { class: 'peer-sub' }, sub.filter(Boolean).join(' · '))),
    );
  }
  if (n) li.append(h('span', { class: 'badge', 'aria-hidden': 'true' }, n > 999 ? '999+' : String(n)));
  return li;
}

function setMark(key, on) {
  if (key === EVERYONE || !S.peers.has(key)) return;
  if (on) S.marks.add(key);
  else S.marks.delete(key);
  const li = ui.peers.querySelector(`[data-peer="${CSS.escape(key)}"]`);
  if (li) {
    li.classList.toggle('marked', on);
    const box = li.querySelector('.mark');
    if (box) box.checked = on;
    li.setAttribute('aria-label', peerLabel(key, S.peers.get(key)));
  }
  renderMarks();
}

function clearMarks() {
  if (!S.marks.size) return false;
  for (const k of [...S.marks]) setMark(k, false);
  return true;
}

function renderMarks() {
  const names = [...S.marks].map((k) => line(nickOf(k)));
  ui.marks.hidden = !names.length;
  ui.marksText.textContent = names.length ? `${names.length} marked: ${names.join(', ')}` : '';
  ui.to.hidden = !names.length;
  ui.to.textContent = names.length ? `to: ${names.join(', ')}` : '';
  renderComposeMode();
}

ui.peers.addEventListener('click', (e) => {
  const li = e.target.closest('[data-peer]');
  if (!li) return;
  const key = li.dataset.peer;
  if (e.target.classList.contains('mark')) {
    setMark(key, e.target.checked);
    return;
  }
  if (e.target.closest('.mark-slot') && key !== EVERYONE) {
    setMark(key, !S.marks.has(key));
    return;
  }
  openConversation(key, { fromList: true });
});

ui.peers.addEventListener('keydown', (e) => {
  const li = e.target.closest('[data-peer]');
  const items = [...ui.peers.querySelectorAll('[data-peer]')];
  const i = li ? items.indexOf(li) : -1;
  const go = (j) => {
    const t = items[Math.max(0, Math.min(items.length - 1, j))];
    if (!t) return;
    items.forEach((x) => (x.tabIndex = -1));
    t.tabIndex = 0;
    t.focus();
  };
  if (e.altKey || e.ctrlKey || e.metaKey) return;
  switch (e.key) {
    case 'ArrowDown':
      e.preventDefault();
      go(i + 1);
      break;
    case 'ArrowUp':
      e.preventDefault();
      if (i <= 0) ui.filter.focus();
      else go(i - 1);
      break;
    case 'Home':
      e.preventDefault();
      go(0);
      break;
    case 'End':
      e.preventDefault();
      go(items.length - 1);
      break;
    case 'Enter':
      if (li) {
        e.preventDefault();
        openConversation(li.dataset.peer, { fromList: true, focusComposer: true });
      }
      break;
    case ' ':
      if (li) {
        e.preventDefault();
        setMark(li.dataset.peer, !S.marks.has(li.dataset.peer));
      }
      break;
    default:
      // Typing filters, as in the terminal chat.
      if (e.key.length === 1 && e.key !== '?') {
        ui.filter.focus();
      }
  }
});

ui.filter.addEventListener('input', () => {
  S.filter = ui.filter.value;
  renderPeers();
});
ui.filter.addEventListener('keydown', (e) => {
  if (e.key === 'ArrowDown') {
    e.preventDefault();
    const first = ui.peers.querySelector('[data-peer]');
    if (first) {
      ui.peers.querySelectorAll('[data-peer]').forEach((x) => (x.tabIndex = -1));
      first.tabIndex = 0;
      first.focus();
    }
  } else if (e.key === 'Enter') {
    e.preventDefault();
    const keys = visibleKeys();
    const k = keys.length > 1 && S.filter.trim() ? keys[1] : keys[0];
    openConversation(k, { fromList: true, focusComposer: true });
  } else if (e.key === 'Escape' && ui.filter.value) {
    e.preventDefault();
    e.stopPropagation();
    ui.filter.value = '';
    S.filter = '';
    renderPeers();
  }
});

$('marks-clear').addEventListener('click', () => clearMarks());
$('refresh-btn').addEventListener('click', refreshPeers);

function refreshPeers() {
  toast('Asking everyone again; who does not answer within 10 s goes offline…', 'info', 4000);
  api({ op: 'peers', refresh: true })
    .then(() => loadState())
    .then(() => toast('Peer list refreshed', 'info', 2500))
    .catch(showError('refresh'));
}

// ---- narrow screens: the peer list as a panel ----------------------------------

const narrow = matchMedia('(max-width: 760px)');
function setPanel(open) {
  ui.body.classList.toggle('panel-open', open);
  ui.panelToggle.setAttribute('aria-expanded', String(open));
  ui.scrim.hidden = !(open && narrow.matches);
  if (open && narrow.matches) {
    (ui.peers.querySelector('[tabindex="0"]') || ui.filter).focus();
  }
}
ui.panelToggle.addEventListener('click', () => setPanel(!ui.body.classList.contains('panel-open')));
ui.scrim.addEventListener('click', () => setPanel(false));
narrow.addEventListener('change', () => setPanel(false));

// ---- me, away --------------------------------------------------------------------

function renderMe() {
  const me = S.me;
  if (!me) return;
  ui.meNick.textContent = line(me.nick || me.user);
  ui.meAddr.textContent = `${line(me.user)}@${line(me.host)} · port ${me.port}`;
  const away = me.away != null;
  ui.away.checked = away;
  ui.meDot.className = `dot ${away ? 'away' : 'online'}`;
  ui.meDot.textContent = away ? '◐' : '●';
  if (away && document.activeElement !== ui.awayText) ui.awayText.value = clean(me.away);
  else if (!away && !ui.awayText.value) ui.awayText.value = S.lastAway;
}

function setAway(on) {
  const text = ui.awayText.value.trim() || 'I am away from my desk.';
  if (on) {
    S.lastAway = text;
    store('pigeon.away', text);
  }
  api({ op: 'status', away: on ? text : null })
    .then(() => {
      S.me.away = on ? text : null;
      renderMe();
      toast(on ? 'Away: messages get your automatic reply' : 'Back online', 'info', 3000);
    })
    .catch((e) => {
      renderMe();
      showError('away')(e);
    });
}
ui.away.addEventListener('change', () => setAway(ui.away.checked));
ui.awayText.addEventListener('keydown', (e) => {
  if (e.key === 'Enter') {
    e.preventDefault();
    ui.away.checked = true;
    setAway(true);
  }
});

// ---- the conversation header ----------------------------------------------------

function renderHeader() {
  const key = conv.key;
  if (!key) {
    ui.title.textContent = 'Pigeon';
    ui.sub.textContent = 'Loading…';
  } else if (key === EVERYONE) {
    const online = [...S.peers.values()].filter((p) => p.online).length;
    ui.title.textContent = 'Everyone';
    ui.sub.textContent = `Broadcasts to and from the whole LAN · ${online} online`;
  } else {
    const p = S.peers.get(key);
    const nick = p ? p.nick || p.user : conv.nick || splitKey(key).user;
    ui.title.textContent = line(nick);
    const bits = [line(key)];
    if (p) {
      if (p.addr) bits.push(line(p.addr) + (p.twins && p.twins.length ? ` (also ${p.twins.map(line).join(', ')})` : ''));
      bits.push(CLIENTS[p.client] || 'unknown client');
      if (p.group) bits.push(`group ${line(p.group)}`);
      if (!p.online) bits.push(p.last_seen ? `offline, last seen ${FF.format(toDate(p.last_seen))}` : 'offline');
      else if (p.away) bits.push(p.absence ? `away: ${line(p.absence)}` : 'away');
      else bits.push('online');
      if (p.key === 'changed') bits.push('⚠ KEY CHANGED');
      else if (p.encrypts) bits.push('🔒 encrypts');
      if (p.program) bits.push(line(p.program));
    } else {
      bits.push('not seen in this run');
    }
    ui.sub.textContent = bits.join(' · ');
  }
  const peerConv = key !== EVERYONE;
  const online = peerConv && S.peers.get(key)?.online;
  ui.shake.disabled = !online;
  ui.info.disabled = !online;
  renderComposeMode();
}

function recipients() {
  if (S.marks.size) return [...S.marks];
  if (conv.key === EVERYONE) return null; // a broadcast
  return [conv.key];
}

function renderComposeMode() {
  const to = recipients();
  if (!to) {
    ui.hint.textContent = 'Broadcast to everyone on the LAN (no receipts)';
    ui.sealed.disabled = true;
  } else {
    ui.sealed.disabled = false;
    ui.hint.textContent = S.marks.size ? `to ${to.length} marked: ${to.map((k) => line(nickOf(k))).join(', ')}` : '';
  }
}

ui.shake.addEventListener('click', shake);
ui.info.addEventListener('click', info);

function shake() {
  if (conv.key === EVERYONE) return;
  const key = conv.key;
  api({ op: 'shake', peer: target(key) })
    .then((a) => {
      const client = a.client || S.peers.get(key)?.client;
      const text = client === 'feiq' || client === 'pigeon'
        ? `You shook ${line(nickOf(key))}'s window`
        : `You shook ${line(nickOf(key))}'s window (${CLIENTS[client] || client || 'its client'} ignores shakes)`;
      if (conv.key === key) appendNotice('shake', text);
    })
    .catch(showError('shake'));
}

function info() {
  if (conv.key === EVERYONE) return;
  const key = conv.key;
  api({ op: 'info', peer: target(key) })
    .then((a) => {
      const i = a.info || {};
      const p = S.peers.get(key);
      if (p) {
        p.program = i.program || null;
        p.absence = i.absence || null;
      }
      const bits = [`${line(i.nick || nickOf(key))} (${line(key)}, ${line(i.addr || '')})`];
      bits.push(`program: ${i.program ? line(i.program) : 'did not say'}`);
      if (i.absence) bits.push(`away: ${line(i.absence)}`);
      if (i.also && i.also.length) bits.push(`also at ${i.also.map(line).join(', ')}`);
      bits.push(i.encrypts ? 'announces encryption' : 'no encryption');
      if (i.key === 'changed') bits.push('KEY CHANGED since it was pinned');
      else if (i.key === 'known') bits.push('key pinned');
      if (conv.key === key) appendNotice('info', bits.join(' · '));
      renderHeader();
    })
    .catch(showError('info'));
}

// ---- messages: model -------------------------------------------------------------

const isMsg = (it) => !it.notice;
const isClosed = (m) => m.dir === 'in' && m.sealed && !m.opened;
const readCheck = (m) => (m.command ? (m.command & READCHECKOPT) !== 0 : true);

function recipient(key, nick, packet, state) {
  return { key, nick: nick || nickOf(key), rids: new Set(), packets: new Set(packet ? [packet] : []), state, reason: null };
}

function fromEntry(e) {
  const pkey = keyOf(e.peer);
  const m = {
    id: e.id,
    dir: e.direction === 'out' ? 'out' : 'in',
    peer: e.peer,
    pkey,
    packet_no: e.packet_no,
    time: toDate(e.time),
    text: e.text || '',
    sealed: !!e.sealed,
    broadcast: !!e.broadcast,
    auto: !!e.auto,
    security: e.security || null,
    command: 0,
    state: e.state ?? null,
    attachments: e.attachments || [],
    files: null,
    recipients: [],
  };
  if (m.dir === 'in') {
    m.opened = !m.sealed || (e.state != null && e.state !== 'unread');
    if (e.files || m.attachments.length) m.files = (e.files || m.attachments).map(fileFrom);
  } else if (!(m.broadcast && pkey === '*@*')) {
    m.recipients = [recipient(pkey, e.peer.nick, e.packet_no, e.state || 'sending')];
  }
  return m;
}

function fileFrom(f) {
  return {
    id: f.id ?? 0,
    name: f.name || '',
    size: f.size || 0,
    kind: f.kind || 'file',
    state: f.state || 'new',
    saved: f.saved || null,
    download: f.download || null,
    progress: null,
    error: null,
  };
}

function fromMessageEvent(ev) {
  const f = ev.from || {};
  const m = {
    id: null,
    dir: 'in',
    peer: { user: f.user, host: f.host, nick: f.nick, addr: f.addr },
    pkey: keyOf(f),
    packet_no: ev.packet_no,
    time: toDate(ev.time),
    text: ev.text || '',
    sealed: !!ev.sealed,
    opened: !ev.sealed,
    broadcast: !!ev.broadcast,
    auto: !!ev.auto,
    security: ev.security || 'plain',
    command: ev.command || 0,
    state: 'unread',
    attachments: ev.attachments || [],
    files: ev.attachments && ev.attachments.length ? ev.attachments.map(fileFrom) : null,
    recipients: [],
  };
  return m;
}

/** The keys a message is found by (receipts, history rows, duplicates). */
function keysOf(m) {
  if (m.dir === 'in') return m.packet_no ? [`in|${m.pkey}|${m.packet_no}`] : [];
  if (m.broadcast && !m.recipients.length) return m.packet_no ? [`out|*@*|${m.packet_no}`] : [];
  const out = [];
  for (const r of m.recipients) for (const p of r.packets) out.push(`out|${r.key}|${p}`);
  return out;
}
const entryKey = (e) => `${e.direction === 'out' ? 'out' : 'in'}|${keyOf(e.peer)}|${e.packet_no}`;

function index(c, m) {
  for (const k of keysOf(m)) if (!c.byKey.has(k)) c.byKey.set(k, m);
  if (m.id != null) {
    c.byId.set(m.id, m);
    if (m.id > c.maxId) c.maxId = m.id;
  }
  for (const r of m.recipients) for (const id of r.rids) c.byRid.set(id, m);
}

function known(c, m) {
  if (m.id != null && c.byId.has(m.id)) return true;
  return keysOf(m).some((k) => c.byKey.has(k));
}

function outState(m) {
  if (m.error) return 'failed';
  if (m.uploading) return 'sending';
  const rs = m.recipients;
  if (!rs.length) return m.pending ? 'sending' : 'sent';
  const st = rs.map((r) => r.state || 'sending');
  for (const s of ['failed', 'sending', 'queued']) if (st.includes(s)) return s;
  return st.every((s) => s === 'read') ? 'read' : 'delivered';
}
const msgState = (m) => (m.dir === 'out' ? outState(m) : m.state || 'unread');

// ---- messages: DOM ------------------------------------------------------------------

function tag(text, cls, title) {
  return h('span', { class: `tag ${cls || ''}`, title }, text);
}

function buildMsg(m) {
  const out = m.dir === 'out';
  const st = msgState(m);
  const cls = `msg ${m.dir}${m.broadcast ? ' broadcast' : ''}${m.auto ? ' auto' : ''}${m.sealed ? ' sealed' : ''}${isClosed(m) ? ' closed' : ''}`;
  const el = h('article', {
    class: cls,
    'data-id': m.id,
    'data-state': st,
    'data-packet': m.packet_no,
    'data-from': m.pkey,
    tabindex: '-1',
  });
  m.el = el;
  const who = out ? 'me' : line(m.peer.nick || m.pkey);
  const meta = h('header', { class: 'meta' },
    h('span', { class: 'who', title: out ? null : line(`${m.pkey} ${m.peer.addr || ''}`) }, who),
    h('time', { datetime: m.time.toISOString(), title: FF.format(m.time) }, TF.format(m.time)));
  if (m.broadcast) meta.append(tag('broadcast', 'bc', 'Sent to everyone on the LAN'));
  if (m.auto) meta.append(tag('automatic reply', 'auto', 'An automatic reply (away)'));
  if (m.sealed) meta.append(tag(out ? 'sealed' : m.opened ? 'opened' : 'sealed', 'seal', 'Sealed: the recipient opens it, and the sender sees it was read'));
  if (m.security === 'verified') meta.append(tag('🔒 verified', 'sec ok', 'Encrypted and signed by the key pinned for this peer'));
  else if (m.security === 'encrypted') meta.append(tag('🔒 encrypted', 'sec', 'Encrypted, not signed'));
  else if (m.security === 'key-changed') meta.append(tag('⚠ key changed', 'sec bad', 'Encrypted with a key other than the one pinned for this peer: compare fingerprints'));
  if (out) {
    const n = m.recipients.length;
    let label = MARKS[st] || st;
    if (n > 1 && st !== 'read') label += ` ${m.recipients.filter((r) => r.state === st || (st === 'delivered' && r.state === 'read')).length}/${n}`;
    meta.append(h('span', { class: 'mark', 'data-state': st, title: `Delivery: ${st}` }, label));
  }
  el.append(meta);
  if (out && (m.recipients.length > 1 || (m.recipients.length === 1 && m.recipients[0].key !== conv.key))) {
    el.append(h('p', { class: 'to' }, 'to: ', m.recipients.map((r) => `${line(r.nick)} ${(MARKS[r.state] || '').split(' ')[0]}`).join(', ')));
  }
  if (isClosed(m)) {
    el.append(h('button', { type: 'button', class: 'open-sealed', 'data-action': 'open' }, '🔒 Sealed message — click or press Enter to open'));
  } else if (/^\[picture\] /.test(m.text)) {
    el.append(h('p', { class: 'text picture' }, '🖼 ', out ? 'Picture sent: ' : 'Picture, saved as ', h('code', null, clean(m.text.slice(10)))));
  } else if (m.text) {
    el.append(h('p', { class: 'text', dir: 'auto' }, clean(m.text)));
  }
  if (m.uploading) {
    const pct = m.uploading.total ? Math.floor((m.uploading.done / m.uploading.total) * 100) : 0;
    el.append(h('div', { class: 'upload' }, progress(pct, 'Uploading'), h('span', { class: 'ptext' }, `uploading ${pct}%`)));
  }
  if (out && m.attachments.length) {
    el.append(h('ul', { class: 'files sent', 'aria-label': 'Offered files' }, ...m.attachments.map((a) =>
      h('li', { class: 'file' }, h('span', { class: 'fkind', 'aria-hidden': 'true' }, a.kind === 'dir' ? '📁' : a.kind === 'path' ? '📌' : '📄'), ' ',
        h('span', { class: 'fname' }, line(a.name)), ' ', h('span', { class: 'fsize' }, sizeText(a))))));
  }
  if (!out && m.files && m.files.length) el.append(buildOffer(m));
  if (m.error) el.append(h('p', { class: 'error' }, `✗ not sent: ${m.error}`));
  for (const r of m.recipients) {
    if (r.reason) el.append(h('p', { class: 'error' }, `✗ ${m.recipients.length > 1 ? `${line(r.nick)}: ` : ''}${clean(r.reason)}`));
  }
  return el;
}

function sizeText(f) {
  if (f.kind === 'path') return 'a path on this machine';
  if (f.kind === 'dir') return `folder${f.size ? `, ${human(f.size)}` : ''}`;
  return human(f.size);
}

function progress(pct, label) {
  const bar = h('div', { class: 'bar' });
  bar.style.width = `${pct}%`;
  return h('div', { class: 'progress', role: 'progressbar', 'aria-label': label, 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': String(pct) }, bar);
}

const FILE_STATES = { new: 'offered', fetching: 'fetching…', fetched: 'saved', declined: 'declined', expired: 'expired', failed: 'failed' };

function buildOffer(m) {
  const box = h('div', { class: 'offer' });
  const ul = h('ul', { class: 'files', 'aria-label': 'Files offered to you' });
  for (const f of m.files) {
    const li = h('li', { class: 'file', 'data-file': f.id, 'data-state': f.state },
      h('span', { class: 'fkind', 'aria-hidden': 'true' }, f.kind === 'dir' ? '📁' : '📄'), ' ',
      h('span', { class: 'fname' }, line(f.name)), ' ',
      h('span', { class: 'fsize' }, sizeText(f)), ' ',
      h('span', { class: 'fstate' }, FILE_STATES[f.state] || f.state));
    if (f.state === 'fetching') {
      const p = f.progress;
      const pct = p && p.total ? Math.min(100, Math.floor((p.done / p.total) * 100)) : 0;
      li.append(h('div', { class: 'fprogress' }, progress(pct, `Fetching ${line(f.name)}`),
        h('span', { class: 'ptext' }, p ? `${pct}% · ${human(p.done)} of ${human(p.total)}` : 'starting…')));
    }
    if (f.state === 'fetched' && f.saved) {
      const saved = h('div', { class: 'saved' }, 'Saved to ', h('code', null, clean(f.saved)));
      if (f.download && f.download.startsWith('/download/')) {
        saved.append(' ', h('a', { href: f.download, download: line(f.name), class: 'download' }, 'Download'));
      }
      li.append(saved);
    }
    if (f.error) li.append(h('div', { class: 'error' }, `✗ ${clean(f.error)}`));
    ul.append(li);
  }
  box.append(ul);
  const open = m.files.filter((f) => ['new', 'expired', 'failed'].includes(f.state));
  const fetching = m.files.some((f) => f.state === 'fetching');
  if (open.length || fetching) {
    const acts = h('div', { class: 'offer-actions' },
      h('button', { type: 'button', class: 'btn small primary', 'data-action': 'accept', disabled: fetching && !open.length, title: `Fetch into ${S.downloadDir || 'the download folder'}` }, 'Accept'),
      h('button', { type: 'button', class: 'btn small', 'data-action': 'decline', disabled: fetching, title: 'Tell the sender you will not fetch them' }, 'Decline'));
    box.append(acts);
  }
  return box;
}

/** Rebuilds a message's element in place (keeping the keyboard focus). */
function refresh(m) {
  const old = m.el;
  if (!old || !old.isConnected) {
    m.el = null;
    return;
  }
  const focus = old.contains(document.activeElement) ? document.activeElement.dataset.action || 'self' : null;
  const el = buildMsg(m);
  old.replaceWith(el);
  if (focus) {
    const t = focus === 'self' ? el : el.querySelector(`[data-action="${focus}"]`) || el;
    t.focus({ preventScroll: true });
  }
}

function buildNotice(n) {
  const el = h('div', { class: 'notice', 'data-kind': n.kind }, h('time', { datetime: n.time.toISOString(), title: FF.format(n.time) }, TF.format(n.time)), ' ', n.text);
  n.el = el;
  return el;
}

function daySep(d) {
  return h('div', { class: 'day', role: 'separator', 'aria-label': DFL.format(d) }, h('span', null, DF.format(d)));
}

/** The DOM of consecutive items, with day separators; `prev`: the day before them. */
function buildItems(items, prev) {
  const frag = document.createDocumentFragment();
  let day = prev;
  for (const it of items) {
    const d = dayKey(it.time);
    if (d !== day) {
      frag.append(daySep(it.time));
      day = d;
    }
    frag.append(it.notice ? buildNotice(it) : buildMsg(it));
  }
  return frag;
}

// ---- the log: scrolling, older pages --------------------------------------------

const olderText = h('span', { class: 'older-text' });
const olderBtn = h('button', { type: 'button', class: 'btn small quiet' }, 'Load older messages');
const older = h('div', { class: 'older' }, olderText, olderBtn);
olderBtn.addEventListener('click', () => loadOlder());

function renderOlder() {
  const c = conv;
  olderBtn.hidden = c.loadingOlder || !c.more;
  older.dataset.state = c.loadingOlder ? 'loading' : c.more ? 'more' : 'start';
  olderText.textContent = c.loadingOlder ? 'Loading older messages…' : !c.more && c.items.length ? 'The beginning of the conversation' : '';
}

const nearBottom = () => ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 48;
function toBottom() {
  ui.log.scrollTop = ui.log.scrollHeight;
  conv.newBelow = 0;
  ui.toBottom.hidden = true;
}
ui.toBottom.addEventListener('click', () => {
  toBottom();
  ui.log.focus({ preventScroll: true });
});

let scrollFrame = 0;
ui.log.addEventListener('scroll', () => {
  if (scrollFrame) return;
  scrollFrame = requestAnimationFrame(() => {
    scrollFrame = 0;
    if (nearBottom()) {
      conv.newBelow = 0;
      ui.toBottom.hidden = true;
    }
    if (ui.log.scrollTop < 150 && conv.more && !conv.loadingOlder && !conv.loading && !conv.jumping) loadOlder();
  });
}, { passive: true });

ui.log.addEventListener('keydown', (e) => {
  if ((e.key === 'PageUp' || e.key === 'Home') && ui.log.scrollTop < 10 && conv.more) loadOlder();
});

ui.log.addEventListener('click', (e) => {
  const b = e.target.closest('[data-action]');
  if (!b) return;
  const el = b.closest('.msg');
  const m = el && findByEl(el);
  if (!m) return;
  if (b.dataset.action === 'open') openSealed(m);
  else if (b.dataset.action === 'accept') accept(m);
  else if (b.dataset.action === 'decline') decline(m);
});

function findByEl(el) {
  for (let i = conv.items.length - 1; i >= 0; i--) if (conv.items[i].el === el) return conv.items[i];
  return null;
}

/** Loads the page before the oldest shown (one at a time: a second call waits for the first). */
function loadOlder(opts) {
  const c = conv;
  if (c.older) return c.older;
  if (!c.more || c.loading) return Promise.resolve(false);
  c.older = olderPage(c, opts || {}).finally(() => (c.older = null));
  return c.older;
}

async function olderPage(c, { keep = true }) {
  c.loadingOlder = true;
  renderOlder();
  let page;
  try {
    page = await call(historyUrl(c.key, c.minId, PAGE));
  } catch (e) {
    showError('older messages')(e);
    return false;
  } finally {
    c.loadingOlder = false;
    if (c === conv) renderOlder();
  }
  if (c !== conv) return false;
  const msgs = page.messages.map(fromEntry).filter((m) => !known(c, m));
  c.more = !!page.more && page.messages.length > 0;
  if (page.messages.length) c.minId = Math.min(c.minId ?? Infinity, page.messages[0].id);
  if (msgs.length) {
    const frag = buildItems(msgs, null);
    const first = c.items[0];
    if (first && dayKey(first.time) === dayKey(msgs[msgs.length - 1].time)) {
      const sep = older.nextElementSibling;
      if (sep && sep.classList.contains('day')) sep.remove();
    }
    const h0 = ui.log.scrollHeight;
    const t0 = ui.log.scrollTop;
    older.after(frag);
    c.items.unshift(...msgs);
    for (const m of msgs) index(c, m);
    if (keep) ui.log.scrollTop = t0 + (ui.log.scrollHeight - h0);
  }
  renderOlder();
  return true;
}

/** Adds items at the end (keeping to the bottom when the view was there). */
function appendItems(items, { own = false } = {}) {
  const c = conv;
  if (!items.length) return;
  const stick = own || nearBottom();
  const last = c.items[c.items.length - 1];
  const frag = buildItems(items, last ? dayKey(last.time) : null);
  ui.log.querySelector('.empty')?.remove();
  ui.log.append(frag);
  for (const it of items) {
    c.items.push(it);
    if (isMsg(it)) index(c, it);
  }
  if (!c.more) renderOlder();
  if (stick) toBottom();
  else {
    c.newBelow += items.filter((i) => isMsg(i) && i.dir === 'in').length;
    if (c.newBelow) {
      ui.toBottom.hidden = false;
      ui.toBottom.textContent = `↓ ${c.newBelow} new message${c.newBelow > 1 ? 's' : ''}`;
    }
  }
}

function appendNotice(kind, text) {
  const n = { notice: true, kind, text, time: new Date() };
  if (conv.loading) conv.queue.push(() => appendItems([n]));
  else appendItems([n]);
}

/** Runs `fn` on the open conversation now, or once it has loaded. */
function inConv(fn) {
  if (conv.loading) conv.queue.push(fn);
  else fn();
}

// ---- opening a conversation -----------------------------------------------------

async function openConversation(key, opts = {}) {
  const { jumpTo = null, resync = false, fromList = false, focusComposer = false } = opts;
  if (fromList && narrow.matches) setPanel(false);
  if (fromList && key !== conv.key) clearMarks();
  if (key === conv.key && !resync) {
    if (conv.loading) {
      if (jumpTo != null) conv.queue.push(() => jump(jumpTo));
    } else if (jumpTo != null) await jump(jumpTo);
    else markSeen();
    if (focusComposer) ui.msg.focus();
    return;
  }
  const gen = ++convGen;
  const prev = conv;
  if (!resync) saveDraft();
  const c = newConv(key);
  c.nick = opts.nick;
  conv = c;
  S.current = key;
  store('pigeon.conversation', key);
  ui.body.dataset.ready = 'false';
  window.pigeonReady = false;
  ui.log.setAttribute('aria-busy', 'true');
  ui.toBottom.hidden = true;
  const keepBottom = resync && prev.key === key && nearBottom();
  const keepTop = resync && prev.key === key ? ui.log.scrollTop : 0;
  if (!resync) {
    ui.log.replaceChildren(h('p', { class: 'loading' }, 'Loading…'));
    restoreDraft();
  }
  renderHeader();
  renderPeers();
  const unread = unreadOf(key);
  let page;
  try {
    page = await call(historyUrl(key, null, PAGE));
  } catch (e) {
    if (gen !== convGen) return;
    c.loading = false;
    ui.log.replaceChildren(older, h('p', { class: 'error' }, `Cannot load the conversation: ${e.message}`));
    ui.log.removeAttribute('aria-busy');
    showError('conversation')(e);
    return;
  }
  if (gen !== convGen) return;
  const msgs = page.messages.map(fromEntry);
  c.more = !!page.more;
  c.minId = msgs.length ? msgs[0].id : null;
  const frag = buildItems(msgs, null);
  for (const m of msgs) {
    c.items.push(m);
    index(c, m);
  }
  ui.log.replaceChildren(older, frag);
  if (!msgs.length) ui.log.append(h('p', { class: 'empty' }, key === EVERYONE ? 'No broadcasts yet. What you write here goes to everyone on the LAN.' : 'No messages yet.'));
  renderOlder();
  // What was on the screen only (sends on their way) stays.
  if (resync) {
    const carry = prev.items.filter((m) => isMsg(m) && m.local && m.id == null && !known(c, m));
    for (const m of carry) m.el = null;
    if (carry.length) appendItems(carry, { own: true });
  }
  c.loading = false;
  const queued = c.queue.splice(0);
  for (const fn of queued) fn();
  // The "N new" line above the first unread message.
  let mark = null;
  if (unread > 0 && !resync) {
    let n = 0;
    for (let i = c.items.length - 1; i >= 0; i--) {
      const m = c.items[i];
      if (isMsg(m) && m.dir === 'in' && (key === EVERYONE || !m.broadcast) && ++n === unread) {
        mark = h('div', { class: 'new-mark', role: 'separator' }, h('span', null, `${unread} new`));
        const before = m.el.previousElementSibling;
        (before && before.classList.contains('day') ? before : m.el).before(mark);
        break;
      }
    }
    if (!mark && c.items.length) {
      mark = h('div', { class: 'new-mark', role: 'separator' }, h('span', null, `${unread} new`));
      older.after(mark);
    }
  }
  c.newMark = mark;
  ui.log.removeAttribute('aria-busy');
  if (resync && !keepBottom) ui.log.scrollTop = keepTop;
  else toBottom();
  if (mark && mark.offsetTop - 8 < ui.log.scrollTop) ui.log.scrollTop = mark.offsetTop - 8;
  markSeen();
  renderPeers();
  ui.body.dataset.conversation = key;
  ui.body.dataset.ready = 'true';
  window.pigeonReady = true;
  try {
    performance.mark('conversation-shown');
  } catch {
    /* old browsers */
  }
  if (jumpTo != null) await jump(jumpTo);
  if (focusComposer) ui.msg.focus();
}

async function jump(id) {
  const c = conv;
  let pages = 0;
  c.jumping = true;
  try {
    while (!c.byId.has(id) && c.more && pages < JUMP_PAGES && c === conv) {
      const ok = await loadOlder({ keep: false });
      if (!ok) break;
      pages++;
    }
  } finally {
    c.jumping = false;
  }
  if (c !== conv) return;
  const m = c.byId.get(id);
  if (!m || !m.el) {
    toast('That message is not in this conversation any more', 'error');
    return;
  }
  m.el.scrollIntoView({ block: 'center' });
  m.el.classList.add('hit');
  m.el.focus({ preventScroll: true });
  setTimeout(() => m.el && m.el.classList.remove('hit'), 2600);
}

function markSeen() {
  const key = conv.key;
  if (document.visibilityState !== 'visible' || conv.loading) return;
  const n = unreadOf(key);
  if (n > 0 || conv.unseen) {
    conv.unseen = false;
    const req = key === EVERYONE ? { op: 'seen', broadcasts: true } : { op: 'seen', ...splitKey(key) };
    api(req).catch(showError('seen'));
    if (key === EVERYONE) S.broadcastsUnread = 0;
    else S.unread.delete(key);
    for (const m of conv.items) {
      if (isMsg(m) && m.dir === 'in' && m.state === 'unread' && !isClosed(m)) {
        m.state = 'read';
        if (m.el) m.el.dataset.state = 'read';
      }
    }
    updateTitle();
    schedulePeers();
  }
}

let seenTimer = 0;
function scheduleSeen() {
  clearTimeout(seenTimer);
  seenTimer = setTimeout(markSeen, 300);
}

document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible' && !conv.loading) markSeen();
});

function step(delta) {
  const keys = visibleKeys();
  let i = keys.indexOf(conv.key);
  if (i < 0) i = 0;
  const j = (i + delta + keys.length) % keys.length;
  openConversation(keys[j], { fromList: true });
}

// ---- drafts -----------------------------------------------------------------------

let draftTimer = 0;
function saveDraft() {
  const t = ui.msg.value;
  if (t) S.drafts[conv.key] = t;
  else delete S.drafts[conv.key];
  store('pigeon.drafts', S.drafts);
}
function restoreDraft() {
  ui.msg.value = S.drafts[conv.key] || '';
  autosize();
}
function autosize() {
  ui.msg.style.height = 'auto';
  ui.msg.style.height = `${Math.min(ui.msg.scrollHeight + 2, 220)}px`;
}
ui.msg.addEventListener('input', () => {
  autosize();
  clearTimeout(draftTimer);
  draftTimer = setTimeout(saveDraft, 500);
});
ui.msg.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.altKey && !e.isComposing && e.keyCode !== 229) {
    e.preventDefault();
    send();
  }
});
ui.composer.addEventListener('submit', (e) => {
  e.preventDefault();
  send();
});

// ---- sending ----------------------------------------------------------------------

async function send() {
  const text = ui.msg.value;
  const chips = S.attachments.slice();
  if (!text.trim() && !chips.length) {
    ui.msg.focus();
    return;
  }
  const to = recipients();
  if (!to && chips.length) {
    toast('Files go to peers, not to everyone: open a conversation or mark peers', 'error');
    return;
  }
  const sealed = !!to && ui.sealed.checked;
  const m = {
    id: null,
    dir: 'out',
    peer: { user: S.me?.user, host: S.me?.host, nick: S.me?.nick, addr: '' },
    pkey: to && to.length === 1 ? to[0] : '*@*',
    packet_no: null,
    time: new Date(),
    text,
    sealed,
    broadcast: !to,
    auto: false,
    security: null,
    command: 0,
    state: null,
    attachments: chips.map((c) => ({ name: c.name, size: c.size, kind: c.kind })),
    files: null,
    recipients: to ? to.map((k) => recipient(k, nickOf(k), null, 'sending')) : [],
    local: true,
    pending: true,
    chips,
    uploading: chips.some((c) => c.files && c.files.length) ? { done: 0, total: chips.reduce((s, c) => s + (c.files ? c.size : 0), 0) } : null,
  };
  ui.msg.value = '';
  autosize();
  saveDraft();
  S.attachments = [];
  renderChips();
  const shownIn = conv;
  inConv(() => appendItems([m], { own: true }));
  const own = { m, text, keys: to ? [...to].sort() : null, broadcast: !to };
  S.own.push(own);
  if (S.own.length > 200) S.own.shift();
  try {
    if (!to) {
      await api({ op: 'broadcast', text });
      m.pending = false;
      refreshIf(shownIn, m);
      return;
    }
    const paths = await upload(chips, m, shownIn);
    m.uploading = null;
    refreshIf(shownIn, m);
    const a = await api({ op: 'send', to: to.map(target), text, sealed, files: paths, detach: true });
    S.own = S.own.filter((o) => o !== own);
    onSendAnswer(m, a.results || [], shownIn);
  } catch (e) {
    S.own = S.own.filter((o) => o !== own);
    m.error = e.message;
    m.uploading = null;
    m.pending = false;
    for (const r of m.recipients) r.state = 'failed';
    refreshIf(shownIn, m);
    if (e.code !== 'unauthorized') toast(`Not sent: ${e.message}`, 'error');
    // Nothing typed is lost: it comes back to an empty message box.
    if (!ui.msg.value && conv === shownIn) {
      ui.msg.value = text;
      autosize();
      if (!S.attachments.length) {
        S.attachments = chips;
        renderChips();
      }
    }
  }
}

function refreshIf(c, m) {
  if (c === conv && m.el) refresh(m);
}

function onSendAnswer(m, results, c) {
  for (const res of results) {
    let r = m.recipients.find((x) => x.key === res.peer);
    if (!r) {
      r = recipient(res.peer, res.nick, null, res.status);
      m.recipients.push(r);
    }
    if (res.nick) r.nick = res.nick;
    r.state = res.status || r.state;
    if (res.reason) r.reason = res.reason;
    const ids = res.parts && res.parts.length ? res.parts : res.id != null ? [res.id] : [];
    for (const id of ids) {
      r.rids.add(id);
      if (c === conv) {
        // A part shown on its own by its `sent` event: ours after all.
        const dup = c.byRid.get(id);
        if (dup && dup !== m && dup.fromEvent) {
          for (const dr of dup.recipients) for (const p of dr.packets) r.packets.add(p);
          removeItem(c, dup);
        }
        c.byRid.set(id, m);
      }
      const early = S.early.get(id);
      if (early) {
        S.early.delete(id);
        r.packets.add(early.packet_no);
        if (r.state !== 'read') r.state = early.status;
        if (early.reason) r.reason = early.reason;
      }
    }
  }
  m.pending = false;
  if (c === conv) {
    index(c, m);
    if (m.el) refresh(m);
    scheduleSync();
  }
}

function removeItem(c, it) {
  const i = c.items.indexOf(it);
  if (i >= 0) c.items.splice(i, 1);
  for (const k of keysOf(it)) if (c.byKey.get(k) === it) c.byKey.delete(k);
  if (it.id != null) c.byId.delete(it.id);
  it.el?.remove();
}

async function upload(chips, m, c) {
  const batch = randomBatch();
  const paths = [];
  let done = 0;
  let last = 0;
  const total = m.uploading ? m.uploading.total : 0;
  for (const chip of chips) {
    if (chip.kind === 'path') {
      if (!paths.includes(chip.path)) paths.push(chip.path);
      continue;
    }
    for (const { file, rel } of chip.files) {
      const r = await putFile(batch, rel, file, (loaded) => {
        const now = performance.now();
        if (now - last < 100) return;
        last = now;
        m.uploading = { done: done + loaded, total };
        if (c === conv && m.el) updateUpload(m);
      });
      done += file.size;
      if (r.path && !paths.includes(r.path)) paths.push(r.path);
    }
  }
  return paths;
}

function updateUpload(m) {
  const pct = m.uploading.total ? Math.floor((m.uploading.done / m.uploading.total) * 100) : 0;
  const bar = m.el.querySelector('.upload .progress');
  if (!bar) return refresh(m);
  bar.setAttribute('aria-valuenow', String(pct));
  bar.firstChild.style.width = `${pct}%`;
  bar.nextSibling.textContent = `uploading ${pct}% · ${human(m.uploading.done)} of ${human(m.uploading.total)}`;
}

function putFile(batch, rel, file, onProgress) {
  return new Promise((resolve, reject) => {
    const url = `/api/upload/${batch}/${rel.split('/').map(encodeURIComponent).join('/')}`;
    const x = new XMLHttpRequest();
    x.open('PUT', url);
    x.upload.addEventListener('progress', (e) => onProgress(e.loaded));
    x.addEventListener('load', () => {
      if (x.status === 401) {
        blocked();
        reject(new ApiError('unauthorized', 'the token is missing'));
        return;
      }
      let b = null;
      try {
        b = JSON.parse(x.responseText);
      } catch {
        /* not JSON */
      }
      if (b && b.ok) resolve(b);
      else reject(new ApiError(b?.code || 'file', b?.error || `the upload of ${rel} failed (HTTP ${x.status})`));
    });
    x.addEventListener('error', () => reject(new ApiError('network', `the upload of ${rel} failed: the daemon does not answer`)));
    x.addEventListener('abort', () => reject(new ApiError('network', `the upload of ${rel} was cancelled`)));
    x.send(file);
  });
}

// ---- attachments: chips, picker, drop, paths ---------------------------------------

function addChip(chip) {
  if (S.attachments.some((c) => c.name === chip.name)) {
    toast(`${line(chip.name)} is attached already`, 'error');
    return false;
  }
  const max = S.maxUploadMb ? S.maxUploadMb * 1048576 : Infinity;
  const big = chip.files && chip.files.find((f) => f.file.size > max);
  if (big) {
    toast(`${line(big.rel)} is larger than this node takes (${S.maxUploadMb} MiB per file, web_max_upload_mb)`, 'error');
    return false;
  }
  S.attachments.push(chip);
  renderChips();
  return true;
}

function renderChips() {
  ui.chips.replaceChildren(...S.attachments.map((c, i) => {
    const icon = c.kind === 'dir' ? '📁' : c.kind === 'path' ? '📌' : '📄';
    const what = c.kind === 'path' ? 'path on this machine' : c.kind === 'dir' ? `folder, ${c.files.length} file${c.files.length > 1 ? 's' : ''}, ${human(c.size)}` : human(c.size);
    const rm = h('button', { type: 'button', class: 'chip-remove', 'aria-label': `Remove ${line(c.name)}`, title: 'Remove' }, '✕');
    rm.addEventListener('click', () => {
      S.attachments.splice(i, 1);
      renderChips();
      ui.msg.focus();
    });
    return h('li', { class: 'chip', 'data-kind': c.kind }, h('span', { 'aria-hidden': 'true' }, icon), ' ', h('span', { class: 'chip-name' }, line(c.name)), ' ', h('span', { class: 'chip-size' }, what), rm);
  }));
  ui.chips.hidden = !S.attachments.length;
}

ui.attach.addEventListener('click', () => ui.files.click());
ui.files.addEventListener('change', () => {
  for (const f of ui.files.files) addChip({ name: f.name, kind: 'file', size: f.size, files: [{ file: f, rel: f.name }] });
  ui.files.value = '';
  ui.msg.focus();
});

function togglePath(open) {
  const show = open ?? ui.pathRow.hidden;
  ui.pathRow.hidden = !show;
  ui.pathBtn.setAttribute('aria-expanded', String(show));
  if (show) ui.pathInput.focus();
}
ui.pathBtn.addEventListener('click', () => togglePath());
$('path-cancel').addEventListener('click', () => {
  togglePath(false);
  ui.msg.focus();
});
function addPath() {
  const p = ui.pathInput.value.trim();
  if (!p) return;
  if (!p.startsWith('/')) {
    toast('Give an absolute path (starting with /) on the machine the daemon runs on', 'error');
    return;
  }
  if (addChip({ name: p, kind: 'path', size: 0, path: p })) {
    ui.pathInput.value = '';
    togglePath(false);
    ui.msg.focus();
  }
}
$('path-add').addEventListener('click', addPath);
ui.pathInput.addEventListener('keydown', (e) => {
  if (e.key === 'Enter') {
    e.preventDefault();
    addPath();
  } else if (e.key === 'Escape') {
    e.preventDefault();
    e.stopPropagation();
    togglePath(false);
    ui.msg.focus();
  }
});

let dragDepth = 0;
const hasFiles = (e) => e.dataTransfer && [...e.dataTransfer.types].includes('Files');
ui.chat.addEventListener('dragenter', (e) => {
  if (!hasFiles(e)) return;
  e.preventDefault();
  dragDepth++;
  ui.chat.classList.add('dragging');
});
ui.chat.addEventListener('dragover', (e) => {
  if (!hasFiles(e)) return;
  e.preventDefault();
  e.dataTransfer.dropEffect = 'copy';
});
ui.chat.addEventListener('dragleave', () => {
  if (--dragDepth <= 0) {
    dragDepth = 0;
    ui.chat.classList.remove('dragging');
  }
});
ui.chat.addEventListener('drop', (e) => {
  if (!hasFiles(e)) return;
  e.preventDefault();
  dragDepth = 0;
  ui.chat.classList.remove('dragging');
  // Entries must be taken now: the list is gone after the event.
  const entries = [...e.dataTransfer.items].filter((i) => i.kind === 'file').map((i) => (i.webkitGetAsEntry ? i.webkitGetAsEntry() : null));
  if (!entries.length || entries.some((x) => !x)) {
    for (const f of e.dataTransfer.files) addChip({ name: f.name, kind: 'file', size: f.size, files: [{ file: f, rel: f.name }] });
    return;
  }
  dropped(entries).catch(showError('drop'));
});

async function dropped(entries) {
  for (const entry of entries) {
    if (entry.isFile) {
      const f = await new Promise((res, rej) => entry.file(res, rej));
      addChip({ name: f.name, kind: 'file', size: f.size, files: [{ file: f, rel: f.name }] });
    } else if (entry.isDirectory) {
      const files = [];
      await walk(entry, files);
      if (!files.length) {
        toast(`${line(entry.name)} holds no file: skipped`, 'error');
        continue;
      }
      addChip({ name: entry.name, kind: 'dir', size: files.reduce((s, f) => s + f.file.size, 0), files });
    }
  }
  ui.msg.focus();
}

async function walk(dir, out) {
  const reader = dir.createReader();
  for (;;) {
    const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
    if (!batch.length) break;
    for (const e of batch) {
      if (e.isFile) {
        const file = await new Promise((res, rej) => e.file(res, rej));
        out.push({ file, rel: e.fullPath.replace(/^\/+/, '') });
      } else if (e.isDirectory) {
        await walk(e, out);
      }
    }
  }
}

// ---- offers, sealed messages ------------------------------------------------------

function accept(m) {
  const before = m.files.map((f) => f.state);
  for (const f of m.files) {
    if (['new', 'expired', 'failed'].includes(f.state)) {
      f.state = 'fetching';
      f.progress = null;
      f.error = null;
    }
  }
  refresh(m);
  call('/api/fetch', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ user: m.peer.user, host: m.peer.host, packet_no: m.packet_no }),
  }).catch((e) => {
    m.files.forEach((f, i) => (f.state = before[i]));
    refresh(m);
    showError('accept')(e);
  });
}

function decline(m) {
  api({ op: 'decline', user: m.peer.user, host: m.peer.host, packet_no: m.packet_no })
    .then(() => {
      for (const f of m.files) if (f.state !== 'fetched') f.state = 'declined';
      refresh(m);
      toast('Declined: the sender was told', 'info', 3000);
    })
    .catch(showError('decline'));
}

function openSealed(m) {
  api({ op: 'open', user: m.peer.user, host: m.peer.host, packet_no: m.packet_no, read_check: readCheck(m) })
    .then(() => {
      m.opened = true;
      m.state = 'read';
      refresh(m);
      m.el?.focus({ preventScroll: true });
    })
    .catch(showError('open'));
}

function openNextSealed() {
  const m = conv.items.find((x) => isMsg(x) && isClosed(x));
  if (!m) {
    toast('No sealed message waits here', 'info', 2500);
    return;
  }
  m.el?.scrollIntoView({ block: 'center' });
  openSealed(m);
}

function offerMsg(ev) {
  return conv.byKey.get(`in|${ev.user}@${ev.host}|${ev.packet_no}`);
}

function onProgress(ev) {
  const m = offerMsg(ev);
  const f = m && m.files && m.files.find((x) => x.id === ev.file);
  if (!f) return;
  const was = f.state;
  f.state = 'fetching';
  f.progress = { done: ev.done, total: ev.total };
  const li = m.el && m.el.querySelector(`.file[data-file="${CSS.escape(String(ev.file))}"]`);
  const bar = li && li.querySelector('.progress');
  if (was !== 'fetching' || !bar) {
    refresh(m);
    return;
  }
  const pct = ev.total ? Math.min(100, Math.floor((ev.done / ev.total) * 100)) : 0;
  bar.setAttribute('aria-valuenow', String(pct));
  bar.firstChild.style.width = `${pct}%`;
  bar.nextSibling.textContent = `${pct}% · ${human(ev.done)} of ${human(ev.total)}`;
}

function onFetched(ev) {
  toast(`Saved ${line(ev.name)} to ${clean(ev.saved)}`, 'info', 6000);
  const m = offerMsg(ev);
  const f = m && m.files && m.files.find((x) => x.id === ev.file);
  if (!f) return;
  Object.assign(f, { state: 'fetched', saved: ev.saved, download: ev.download || null, progress: null, error: null });
  refresh(m);
}

function onFetchFailed(ev) {
  toast(`Fetching ${line(ev.name)} failed: ${clean(ev.error)}`, 'error');
  const m = offerMsg(ev);
  const f = m && m.files && m.files.find((x) => x.id === ev.file);
  if (!f) return;
  Object.assign(f, { state: 'failed', error: ev.error, progress: null });
  refresh(m);
}

// ---- events --------------------------------------------------------------------------

let es = null;
let backoff = 1000;
let reconnectTimer = 0;

function connect() {
  clearTimeout(reconnectTimer);
  if (es) es.close();
  es = new EventSource('/api/events');
  es.addEventListener('message', (e) => {
    let ev;
    try {
      ev = JSON.parse(e.data);
    } catch {
      return;
    }
    try {
      onEvent(ev);
    } catch (err) {
      console.error('event', ev, err);
    }
  });
  es.addEventListener('error', () => {
    if (!ui.blocked.hidden) return;
    setConn('reconnecting');
    if (es && es.readyState === EventSource.CLOSED) {
      // The browser gave up (an HTTP error): see why, then try again later.
      es = null;
      fetch('/api/state', { credentials: 'same-origin', cache: 'no-store' })
        .then((r) => {
          if (r.status === 401) blocked();
        })
        .catch(() => {})
        .finally(() => {
          if (!ui.blocked.hidden) return;
          reconnectTimer = setTimeout(connect, backoff);
          backoff = Math.min(backoff * 2, 30000);
        });
    }
  });
}

function onEvent(ev) {
  switch (ev.event) {
    case 'hello':
      setConn('live');
      backoff = 1000;
      if (!S.started) start();
      else resync();
      break;
    case 'peer_online':
      upsertPeer(ev.peer, true, true);
      break;
    case 'peer_changed':
      upsertPeer(ev.peer, true);
      break;
    case 'peer_offline':
      upsertPeer(ev.peer, false);
      break;
    case 'message':
      onMessage(ev, false);
      break;
    case 'offer':
      onMessage(ev, true);
      break;
    case 'sent':
      inConv(() => onSent(ev));
      break;
    case 'receipt':
      inConv(() => onReceipt(ev));
      break;
    case 'read':
      inConv(() => onReceipt({ peer: ev.peer, packet_no: ev.packet_no, status: 'read', id: null }));
      break;
    case 'send_failed':
      onSendFailed(ev);
      break;
    case 'shake':
      onShake(ev);
      break;
    case 'away':
      if (S.me) {
        S.me.away = ev.away ?? null;
        renderMe();
      }
      break;
    case 'key_changed': {
      const text = `${line(nickOf(ev.peer))} (${line(ev.peer)}) gave a NEW public key (${line(ev.fingerprint)}): compare fingerprints with them, then run pigeon keys --trust ${line(ev.peer)}`;
      const p = S.peers.get(ev.peer);
      if (p) p.key = 'changed';
      if (conv.key === ev.peer) {
        appendNotice('key', `⚠ ${text}`);
        renderHeader();
      }
      toast(text, 'error', 20000);
      break;
    }
    case 'info': {
      const p = S.peers.get(ev.peer);
      if (p) {
        if (ev.absence !== undefined) p.absence = ev.absence;
        if (ev.version) p.program = ev.version;
        if (conv.key === ev.peer) renderHeader();
      }
      break;
    }
    case 'lagged':
      toast(`Missed ${ev.missed} events (the page was too slow); reloading`, 'error', 6000);
      resync();
      break;
    case 'progress':
      inConv(() => onProgress(ev));
      break;
    case 'fetched':
      inConv(() => onFetched(ev));
      break;
    case 'fetch_failed':
      inConv(() => onFetchFailed(ev));
      break;
    default:
      break;
  }
}

function onMessage(ev, isOffer) {
  const m = fromMessageEvent(ev);
  const key = m.pkey;
  if (!S.peers.has(key)) {
    // A message from a peer that never announced itself.
    S.peers.set(key, peerFrom({ user: m.peer.user, host: m.peer.host, nick: m.peer.nick, addr: m.peer.addr, client: 'unknown', away: false }, true));
    schedulePeers();
  }
  const convKey = m.broadcast ? EVERYONE : key;
  const here = conv.key === convKey || (m.broadcast && conv.key === key);
  if (here) {
    inConv(() => {
      if (!known(conv, m)) appendItems([m]);
    });
  }
  if (isOffer) return; // the same message again, for scripts
  const visible = document.visibilityState === 'visible';
  if (conv.key === convKey && visible) {
    conv.unseen = true;
    scheduleSeen();
  } else {
    if (m.broadcast) S.broadcastsUnread++;
    else S.unread.set(key, (S.unread.get(key) || 0) + 1);
    updateTitle();
    schedulePeers();
    if (conv.key === convKey && !conv.newMark && !conv.loading) {
      conv.newMark = h('div', { class: 'new-mark', role: 'separator' }, h('span', null, 'new'));
      m.el?.before(conv.newMark);
    }
  }
  const nick = line(m.peer.nick || key);
  const preview = m.sealed ? 'sealed message' : m.files ? `offers ${m.files.map((f) => line(f.name)).join(', ')}${m.text ? ` — ${line(m.text)}` : ''}` : line(m.text);
  if (!here && visible) toast(`${nick}${m.broadcast ? ' (broadcast)' : ''}: ${preview.slice(0, 160)}`, 'incoming', 6000);
  notify(nick, preview, convKey);
  if (here) scheduleSync();
}

function onSent(ev) {
  const to = ev.to || [];
  const ids = to.map((t) => t.id).filter((id) => id);
  // Ours, its answer came already: it learns its packet number.
  const mine = ids.map((id) => conv.byRid.get(id)).find(Boolean);
  if (mine) {
    for (const t of to) {
      const r = mine.recipients.find((x) => x.key === t.peer);
      if (r && t.id && r.rids.has(t.id)) r.packets.add(ev.packet_no);
    }
    mine.packet_no = mine.packet_no || ev.packet_no;
    index(conv, mine);
    scheduleSync();
    return;
  }
  // Ours, before its answer.
  const keys = to.map((t) => t.peer).sort();
  const i = ev.auto ? -1 : S.own.findIndex((o) => o.text === ev.text && o.broadcast === !!ev.broadcast && (o.broadcast || (o.keys.length === keys.length && o.keys.every((k, j) => k === keys[j]))));
  if (i >= 0) {
    const m = S.own[i].m;
    S.own.splice(i, 1);
    m.packet_no = ev.packet_no;
    for (const t of to) {
      const r = m.recipients.find((x) => x.key === t.peer);
      if (!r) continue;
      r.packets.add(ev.packet_no);
      if (t.id) r.rids.add(t.id);
    }
    if (conv.items.includes(m)) {
      index(conv, m);
      scheduleSync();
    }
    return;
  }
  // Another client's (a script's `pigeon send`), or our automatic reply.
  const base = {
    id: null,
    dir: 'out',
    peer: { user: S.me?.user, host: S.me?.host, nick: S.me?.nick, addr: '' },
    packet_no: ev.packet_no,
    time: toDate(ev.time),
    text: ev.text || '',
    sealed: !!ev.sealed,
    broadcast: !!ev.broadcast,
    auto: !!ev.auto,
    security: null,
    command: ev.command || 0,
    state: null,
    attachments: ev.attachments || [],
    files: null,
    fromEvent: true,
  };
  if (ev.broadcast && !ev.auto) {
    if (conv.key !== EVERYONE) return;
    const m = { ...base, pkey: '*@*', recipients: [] };
    if (!known(conv, m)) {
      appendItems([m]);
      scheduleSync();
    }
    return;
  }
  for (const t of to) {
    if (t.peer !== conv.key) continue;
    const early = t.id ? S.early.get(t.id) : null;
    const r = recipient(t.peer, nickOf(t.peer), early ? early.packet_no : ev.packet_no, early ? early.status : ev.auto || !t.id ? 'delivered' : 'sending');
    r.packets.add(ev.packet_no);
    if (t.id) {
      r.rids.add(t.id);
      S.early.delete(t.id);
    }
    const m = { ...base, pkey: t.peer, recipients: [r] };
    if (!known(conv, m)) {
      appendItems([m]);
      scheduleSync();
    }
  }
}

function findOut(peer, id, packet) {
  const c = conv;
  let m = packet ? c.byKey.get(`out|${peer}|${packet}`) : null;
  if (!m && id) m = c.byRid.get(id);
  if (!m) return null;
  const r = m.recipients.find((x) => x.key === peer && ((id && x.rids.has(id)) || (packet && x.packets.has(packet))));
  return r ? { m, r } : null;
}

function onReceipt(ev) {
  const hit = findOut(ev.peer, ev.id, ev.packet_no);
  if (!hit) {
    if (ev.id) {
      const had = S.early.get(ev.id);
      S.early.set(ev.id, { peer: ev.peer, packet_no: ev.packet_no, status: had && had.status === 'read' ? 'read' : ev.status, reason: had?.reason });
      if (S.early.size > 5000) S.early.delete(S.early.keys().next().value);
    }
    return;
  }
  const { m, r } = hit;
  if (ev.id) r.rids.add(ev.id);
  if (ev.packet_no) r.packets.add(ev.packet_no);
  index(conv, m);
  // A read receipt is final; a late "delivered" does not undo it.
  if (r.state !== 'read' || ev.status === 'read') r.state = ev.status;
  refresh(m);
}

function onSendFailed(ev) {
  toast(`Not delivered to ${line(nickOf(ev.peer))}: ${clean(ev.reason)}`, 'error');
  inConv(() => {
    const hit = findOut(ev.peer, ev.id, ev.packet_no);
    if (hit) {
      hit.r.reason = ev.reason;
      refresh(hit.m);
    } else if (ev.id) {
      const had = S.early.get(ev.id) || { peer: ev.peer, packet_no: ev.packet_no, status: 'failed' };
      had.reason = ev.reason;
      S.early.set(ev.id, had);
    }
  });
}

function onShake(ev) {
  const p = ev.from || {};
  const key = keyOf(p);
  if (!S.peers.has(key) && p.user) upsertPeer(p, true);
  const text = `${line(p.nick || key)} shook your window`;
  if (conv.key === key) {
    appendNotice('shake', text);
    ui.chat.classList.remove('shaking');
    void ui.chat.offsetWidth; // restart the animation
    ui.chat.classList.add('shaking');
    setTimeout(() => ui.chat.classList.remove('shaking'), 700);
  } else {
    toast(text, 'incoming', 6000);
  }
  notify(line(p.nick || key), 'shook your window', key);
}

ui.chat.addEventListener('animationend', () => ui.chat.classList.remove('shaking'));

// ---- matching what the store holds (history ids) --------------------------------

let syncTimer = 0;
let syncTries = 0;
function scheduleSync(delay = 400) {
  clearTimeout(syncTimer);
  syncTimer = setTimeout(syncTail, delay);
}

/** Gives the messages shown from events their history ids (and adds what was missed). */
async function syncTail() {
  const c = conv;
  if (c.loading) return scheduleSync();
  let page;
  try {
    page = await call(historyUrl(c.key, null, 50));
  } catch {
    return;
  }
  if (c !== conv) return;
  const add = [];
  const top = c.maxId;
  for (const e of page.messages) {
    if (c.byId.has(e.id)) continue;
    let m = c.byKey.get(entryKey(e));
    if (!m && e.direction === 'out') {
      // Ours, whose packet number is not known yet.
      const to = keyOf(e.peer);
      m = c.items.find((x) => isMsg(x) && x.local && x.dir === 'out' && x.id == null && !x.error && !keysOf(x).length && x.text === e.text && (x.broadcast ? to === '*@*' : x.recipients.some((r) => r.key === to)));
      if (m) {
        for (const r of m.recipients) if (r.key === keyOf(e.peer)) r.packets.add(e.packet_no);
        m.packet_no = m.packet_no || e.packet_no;
      }
    }
    if (m) {
      if (m.id == null) {
        m.id = e.id;
        if (m.el) m.el.dataset.id = String(e.id);
      }
      index(c, m);
      continue;
    }
    if (e.id > top) add.push(fromEntry(e));
  }
  if (add.length) appendItems(add);
  const waiting = c.items.some((x) => isMsg(x) && x.id == null && !x.error && (x.dir === 'in' || (x.broadcast ? c.key === EVERYONE : x.recipients.some((r) => r.key === c.key))));
  if (waiting && syncTries < 3) {
    syncTries++;
    scheduleSync(1500 * syncTries);
  } else {
    syncTries = 0;
  }
}

// ---- reconnecting --------------------------------------------------------------------

let resyncing = null;
function resync() {
  if (resyncing) return resyncing;
  resyncing = loadState()
    .catch(showError('state'))
    .then(() => openConversation(conv.key, { resync: true }))
    .finally(() => (resyncing = null));
  return resyncing;
}

// ---- search ---------------------------------------------------------------------------

let searchGen = 0;
let searchTimer = 0;
const wide = matchMedia('(min-width: 1100px)');

function closeSearch() {
  if (ui.searchPanel.hidden) return false;
  ui.searchPanel.hidden = true;
  ui.main.classList.remove('with-search');
  searchGen++;
  return true;
}

async function runSearch() {
  const q = ui.search.value.trim();
  const gen = ++searchGen;
  if (!q) {
    closeSearch();
    return;
  }
  ui.searchPanel.hidden = false;
  ui.main.classList.add('with-search');
  ui.searchTitle.textContent = 'Searching…';
  let r;
  try {
    r = await call(`/api/search?q=${encodeURIComponent(q)}&limit=50`);
  } catch (e) {
    if (gen !== searchGen) return;
    ui.searchTitle.textContent = 'Search failed';
    ui.results.replaceChildren(h('li', { class: 'error' }, e.message));
    return;
  }
  if (gen !== searchGen) return;
  const list = r.messages || [];
  ui.searchTitle.textContent = list.length ? `${list.length}${list.length >= 50 ? '+' : ''} found for “${q}”` : `Nothing found for “${q}”`;
  const words = q.toLowerCase().split(/\s+/).filter(Boolean);
  ui.results.replaceChildren(...list.map((e) => resultItem(e, words)));
}

function resultItem(e, words) {
  const everyone = e.broadcast || (e.peer.user === '*' && e.peer.host === '*');
  const key = everyone ? EVERYONE : keyOf(e.peer);
  const t = toDate(e.time);
  const who = everyone && e.direction === 'out' ? 'me → everyone' : e.direction === 'out' ? `me → ${line(e.peer.nick || key)}` : `${line(e.peer.nick || key)}${everyone ? ' → everyone' : ''}`;
  const btn = h('button', { type: 'button', class: 'result', 'data-id': e.id, 'data-conversation': key },
    h('span', { class: 'result-meta' }, h('span', { class: 'who' }, who), ' ', h('time', { datetime: t.toISOString() }, `${DF.format(t)} ${TF.format(t)}`)),
    highlight(e.sealed && e.direction === 'in' && e.state === 'unread' ? '🔒 sealed message' : e.text || (e.attachments || []).map((a) => a.name).join(', '), words));
  btn.addEventListener('click', () => {
    if (!wide.matches) closeSearch();
    openConversation(key, { jumpTo: e.id, nick: e.peer.nick, fromList: true });
  });
  return h('li', null, btn);
}

/** The text with the words found marked (as text nodes and <mark>s). */
function highlight(text, words) {
  const s = line(text);
  const p = h('span', { class: 'result-text' });
  const low = s.toLowerCase();
  let i = 0;
  let guard = 0;
  while (i < s.length && guard++ < 50) {
    let best = -1;
    let len = 0;
    for (const w of words) {
      const j = low.indexOf(w, i);
      if (j >= 0 && (best < 0 || j < best)) {
        best = j;
        len = w.length;
      }
    }
    if (best < 0) break;
    p.append(s.slice(i, best), h('mark', null, s.slice(best, best + len)));
    i = best + len;
  }
  p.append(s.slice(i));
  return p;
}

$('search-form').addEventListener('submit', (e) => {
  e.preventDefault();
  clearTimeout(searchTimer);
  runSearch();
});
ui.search.addEventListener('input', () => {
  clearTimeout(searchTimer);
  if (!ui.search.value.trim()) {
    closeSearch();
    return;
  }
  searchTimer = setTimeout(runSearch, 400);
});
ui.search.addEventListener('keydown', (e) => {
  if (e.key === 'ArrowDown' && !ui.searchPanel.hidden) {
    e.preventDefault();
    ui.results.querySelector('button')?.focus();
  }
});
ui.results.addEventListener('keydown', (e) => {
  const b = e.target.closest('button');
  if (!b) return;
  const all = [...ui.results.querySelectorAll('button')];
  const i = all.indexOf(b);
  if (e.key === 'ArrowDown') {
    e.preventDefault();
    all[Math.min(all.length - 1, i + 1)]?.focus();
  } else if (e.key === 'ArrowUp') {
    e.preventDefault();
    (i > 0 ? all[i - 1] : ui.search).focus();
  }
});
$('search-close').addEventListener('click', () => {
  closeSearch();
  ui.search.focus();
});

// ---- notifications -------------------------------------------------------------------

function renderNotify() {
  const on = S.notify && 'Notification' in window && Notification.permission === 'granted';
  ui.notify.setAttribute('aria-pressed', String(on));
  ui.notify.title = on ? 'Desktop notifications are on (when the tab is hidden)' : 'Turn on desktop notifications (when the tab is hidden)';
}
ui.notify.addEventListener('click', async () => {
  if (!('Notification' in window)) {
    toast('This browser has no desktop notifications', 'error');
    return;
  }
  if (S.notify && Notification.permission === 'granted') {
    S.notify = false;
  } else if (Notification.permission === 'denied') {
    toast('Notifications are blocked for this page in the browser settings', 'error');
    S.notify = false;
  } else {
    const p = Notification.permission === 'granted' ? 'granted' : await Notification.requestPermission();
    S.notify = p === 'granted';
    if (!S.notify) toast('Notifications were not allowed', 'error');
  }
  store('pigeon.notify', S.notify);
  renderNotify();
});

function notify(title, body, key) {
  if (!S.notify || !document.hidden || !('Notification' in window) || Notification.permission !== 'granted') return;
  try {
    const n = new Notification(title, { body: body.slice(0, 200), tag: `pigeon-${key}`, icon: '/assets/icon.svg' });
    n.addEventListener('click', () => {
      window.focus();
      openConversation(key, { fromList: true });
      n.close();
    });
  } catch {
    /* some browsers want a service worker */
  }
}

// ---- help and the keyboard ---------------------------------------------------------

function openHelp() {
  if (!ui.help.open) ui.help.showModal();
}
$('help-btn').addEventListener('click', openHelp);

document.addEventListener('keydown', (e) => {
  const mod = e.ctrlKey || e.metaKey;
  const k = e.key;
  if (k === 'F1' || (mod && (k === '/' || e.code === 'Slash'))) {
    e.preventDefault();
    openHelp();
    return;
  }
  if (ui.help.open) return;
  if (k === '?' && !mod && !e.altKey && !isEditable(e.target)) {
    e.preventDefault();
    openHelp();
    return;
  }
  if (mod && !e.altKey && !e.shiftKey) {
    const key = k.toLowerCase();
    const actions = {
      k: () => {
        if (narrow.matches) setPanel(true);
        ui.filter.focus();
        ui.filter.select();
      },
      f: () => {
        ui.search.focus();
        ui.search.select();
      },
      u: () => ui.files.click(),
      s: () => {
        if (!ui.sealed.disabled) {
          ui.sealed.checked = !ui.sealed.checked;
          toast(ui.sealed.checked ? 'The next messages go sealed' : 'Not sealed any more', 'info', 2000);
        }
      },
      g: shake,
    };
    if (actions[key]) {
      e.preventDefault();
      actions[key]();
      return;
    }
  }
  if (e.altKey && !mod) {
    const actions = {
      ArrowUp: () => step(-1),
      ArrowDown: () => step(1),
      KeyA: () => {
        ui.away.checked = !ui.away.checked;
        setAway(ui.away.checked);
      },
      KeyP: () => togglePath(),
      KeyR: refreshPeers,
      KeyL: () => setPanel(!ui.body.classList.contains('panel-open')),
      KeyI: info,
      KeyM: () => conv.key !== EVERYONE && setMark(conv.key, !S.marks.has(conv.key)),
      KeyO: openNextSealed,
      End: () => {
        toBottom();
        ui.msg.focus();
      },
    };
    const fn = actions[k] || actions[e.code];
    if (fn) {
      e.preventDefault();
      fn();
      return;
    }
  }
  if (k === 'Escape') {
    if (closeSearch()) {
      e.preventDefault();
      ui.search.focus();
    } else if (ui.body.classList.contains('panel-open') && narrow.matches) {
      e.preventDefault();
      setPanel(false);
      ui.panelToggle.focus();
    } else if (!ui.pathRow.hidden) {
      e.preventDefault();
      togglePath(false);
    } else if (clearMarks()) {
      e.preventDefault();
    }
  }
});

// ---- start ----------------------------------------------------------------------------

let stateReady = Promise.resolve();
async function start() {
  if (S.started) return;
  S.started = true;
  await stateReady;
  let key = S.current;
  if (key !== EVERYONE && !S.peers.has(key)) key = EVERYONE;
  openConversation(key);
}

function init() {
  window.pigeonReady = false;
  renderNotify();
  renderChips();
  setConn('connecting');
  if (!narrow.matches) ui.body.classList.add('panel-open');
  connect();
  stateReady = loadState()
    .then(() => {
      // The event stream's hello opens the conversation; without one (a
      // proxy that holds it back), open it anyway.
      setTimeout(() => {
        if (!S.started && ui.blocked.hidden) start();
      }, 2500);
    })
    .catch(showError('state'));
}

init();
