// app.js — the korcam's page: log in, the conflict queue with filters, one conflict side by side
// with its household's history and a map of its GPS points (inline SVG, no tiles), the buttons
// that resolve it, and the summary per desa. It talks only to /korcam/api/ (server/korcam.c).
// Every piece of data reaches the page through textContent or a numeric SVG attribute: nothing
// from the server is ever parsed as HTML (a household name may hold "<script>").
'use strict';

const S = { csrf: '', user: null, current: null };
const $ = (id) => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const k in attrs) e.setAttribute(k, String(attrs[k]));
  return e;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

function show(v) {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

function when(ms) {
  if (!ms) return '—';
  return new Date(ms).toISOString().replace('T', ' ').slice(0, 16) + ' UTC';
}

async function api(method, path, body) {
  const opt = { method, credentials: 'same-origin', headers: {} };
  if (body !== undefined) {
    opt.headers['Content-Type'] = 'application/json';
    opt.body = JSON.stringify(body);
  }
  if (method === 'POST') opt.headers['X-CSRF-Token'] = S.csrf;
  const r = await fetch('api/' + path, opt);
  let j = null;
  try { j = await r.json(); } catch (e) { j = { error: 'bad_answer', message: 'not JSON' }; }
  if (r.status === 401 && path !== 'login') { loggedOut(); }
  if (!r.ok) { const e = new Error(j.message || r.statusText); e.status = r.status; throw e; }
  return j;
}

// ---- login ------------------------------------------------------------------------------------

function loggedOut() {
  S.csrf = ''; S.user = null;
  $('app').hidden = true; $('who').hidden = true; $('login').hidden = false;
}

function loggedIn(j) {
  S.csrf = j.csrf; S.user = j.user;
  $('who-name').textContent = j.user.name + ' (' + j.user.id + ')';
  $('who-area').textContent = 'kecamatan ' + j.user.area;
  $('login').hidden = true; $('who').hidden = false; $('app').hidden = false;
  loadSummary().then(loadList);
}

$('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('login-error').textContent = '';
  try {
    const j = await api('POST', 'login', { user: $('login-user').value,
                                          password: $('login-password').value });
    $('login-password').value = '';
    loggedIn(j);
  } catch (e) { $('login-error').textContent = e.message; }
});

$('logout').addEventListener('click', async () => {
  try { await api('POST', 'logout', {}); } catch (e) { /* gone already */ }
  loggedOut();
});

// ---- tabs ---------------------------------------------------------------------------------------

function tab(name) {
  $('queue').hidden = name !== 'queue';
  $('summary').hidden = name !== 'summary';
  $('tab-queue').classList.toggle('active', name === 'queue');
  $('tab-summary').classList.toggle('active', name === 'summary');
}
$('tab-queue').addEventListener('click', () => tab('queue'));
$('tab-summary').addEventListener('click', () => { tab('summary'); loadSummary(); });

// ---- the queue --------------------------------------------------------------------------------

function query() {
  const p = new URLSearchParams();
  const add = (k, id) => { const v = $(id).value.trim(); if (v) p.set(k, v); };
  add('kind', 'f-kind'); add('desa', 'f-desa'); add('enumerator', 'f-enumerator');
  add('age', 'f-age'); add('state', 'f-state');
  return p.toString();
}

async function loadList() {
  const tb = $('list').tBodies[0];
  let j;
  try { j = await api('GET', 'conflicts?' + query()); } catch (e) {
    $('count').textContent = e.message; return;
  }
  clear(tb);
  $('count').textContent = j.total + (j.total === 1 ? ' conflict' : ' conflicts');
  for (const c of j.conflicts) {
    const tr = el('tr');
    tr.dataset.id = c.id;
    tr.tabIndex = 0;
    for (const v of [c.id, c.kind, c.desa, c.head_name ? c.head_name + ' · ' + c.household_id
                     : c.household_id, c.field || '—',
                     (c.device.name || '') + ' (' + c.device.user + ')', c.age_hours + ' h',
                     c.state]) tr.appendChild(el('td', v));
    if (S.current === c.id) tr.classList.add('sel');
    tr.addEventListener('click', () => openConflict(c.id));
    tr.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') openConflict(c.id); });
    tb.appendChild(tr);
  }
}

$('filters').addEventListener('submit', (ev) => { ev.preventDefault(); loadList(); });

// ---- one conflict -------------------------------------------------------------------------------

function who(side) {
  if (!side.user && !side.device) return 'prelist / unknown';
  return (side.name ? side.name + ' ' : '') + '(' + (side.user || '?') + ')';
}

async function openConflict(id) {
  let j;
  try { j = await api('GET', 'conflicts/' + id); } catch (e) { $('count').textContent = e.message; return; }
  S.current = id;
  for (const tr of $('list').tBodies[0].rows) tr.classList.toggle('sel', tr.dataset.id == id);
  const c = j.conflict;
  $('detail').hidden = false;
  $('d-title').textContent = 'Conflict #' + c.id + ' — ' + c.kind +
    (c.field ? ' · ' + c.entity + '.' + c.field : ' · ' + c.entity);
  const hh = j.household;
  $('d-household').textContent = hh ? 'Household ' + hh.id + ' · head ' + hh.head_name +
    ' · desa ' + hh.desa + ' · ' + hh.address : 'Household ' + c.household_id;

  const tb = $('d-sides').tBodies[0];
  clear(tb);
  const rows = [
    ['Value', show(c.base.value), show(c.server.value), show(c.device.value)],
    ['Who', '', who(c.server), who(c.device)],
    ['Device', '', show(c.server.device), show(c.device.device)],
    ['When', 'rev ' + c.base.rev, when(c.server.time), when(c.device.time)],
    ['Batch', '', c.server.batch ? c.server.batch.slice(0, 12) + '…' : '—',
     '#' + c.device.batch_seq + ' ' + (c.device.batch || '').slice(0, 12) + '…'],
  ];
  if (c.related) rows.push(['Other record', '', c.related, c.target]);
  for (const r of rows) {
    const tr = el('tr');
    tr.appendChild(el('th', r[0]));
    for (let i = 1; i < r.length; i++) tr.appendChild(el('td', r[i]));
    tb.appendChild(tr);
  }
  $('d-resolution').textContent = c.resolution
    ? 'Resolved: ' + c.resolution.action + ' → ' + show(c.resolution.value) + ' by ' +
      c.resolution.by_name + ' (' + c.resolution.by + ') ' + when(c.resolution.at) +
      (c.resolution.note ? ' — “' + c.resolution.note + '”' : '')
    : 'Open since ' + when(c.created_at);

  // the buttons this kind allows
  const f = $('resolve');
  f.hidden = c.state !== 'open';
  $('r-error').textContent = '';
  for (const b of f.querySelectorAll('button[data-action]'))
    b.hidden = !c.actions.includes(b.dataset.action);
  for (const s of f.querySelectorAll('[data-needs]'))
    s.hidden = !c.actions.includes(s.dataset.needs);
  $('r-value').value = '';
  $('r-into').value = j.related_household ? j.related_household.id : '';
  const sel = $('r-member');
  clear(sel);
  for (const h of [hh, j.related_household]) {
    if (!h) continue;
    for (const m of h.members) {
      if (m.status !== 'active') continue;
      const o = el('option', m.id + ' · ' + m.name);
      o.value = m.id;
      sel.appendChild(o);
    }
  }

  members(hh, j.related_household);
  history(j.history);
  drawMap($('d-map'), j.points, j.shape);
}

function members(hh, rel) {
  const tb = $('d-members').tBodies[0];
  clear(tb);
  for (const h of [hh, rel]) {
    if (!h) continue;
    const head = el('tr');
    const th = el('th', h.id + ' · ' + h.head_name);
    th.colSpan = 4;
    head.appendChild(th);
    tb.appendChild(head);
    for (const m of h.members) {
      const tr = el('tr');
      for (const v of [m.member_no, m.name, m.nik || '—', m.status]) tr.appendChild(el('td', v));
      tb.appendChild(tr);
    }
  }
}

// A whole record (a create or visit op carries one as JSON text) shortened to what says most.
function brief(v) {
  if (typeof v === 'string' && v.startsWith('{')) {
    try {
      const o = JSON.parse(v);
      if (o.outcome) return 'visit: ' + o.outcome + (o.lat !== undefined && o.lat !== null ?
        ' at ' + o.lat.toFixed(5) + ', ' + o.lon.toFixed(5) : '');
      if (o.name) return 'member ' + o.name + (o.nik ? ' · ' + o.nik : '');
      if (o.head_name) return 'household of ' + o.head_name;
      return Object.keys(o).length + ' fields';
    } catch (e) { /* shown as it is */ }
  }
  return show(v);
}

function history(rows) {
  const tb = $('d-history').tBodies[0];
  clear(tb);
  for (const a of rows) {
    const tr = el('tr');
    for (const v of [when(a.at), a.action, a.actor + (a.device ? ' @' + a.device : ''),
                     a.entity + ' ' + a.target, a.field || '—', brief(a.old), brief(a.new)])
      tr.appendChild(el('td', v));
    tb.appendChild(tr);
  }
}

for (const b of document.querySelectorAll('#resolve button[data-action]')) {
  b.addEventListener('click', async () => {
    const action = b.dataset.action;
    const body = { action, note: $('r-note').value };
    if (action === 'value') body.value = $('r-value').value;
    if (action === 'merge') body.into = $('r-into').value.trim();
    if (action === 'split') body.member = $('r-member').value;
    $('r-error').textContent = '';
    try {
      await api('POST', 'conflicts/' + S.current + '/resolve', body);
      $('r-note').value = '';
      await openConflict(S.current);
      await loadList();
    } catch (e) { $('r-error').textContent = e.message; }
  });
}

// ---- the map: GPS points on a local plane, metres, no tiles -----------------------------------

function drawMap(box, points, shape) {
  clear(box);
  const W = 420, H = 300, M = 24;
  const pts = points.filter((p) => isFinite(p.lat) && isFinite(p.lon));
  const s = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, width: W, height: H, role: 'img',
                         'aria-label': 'map of the GPS points' });
  s.appendChild(svg('rect', { x: 0, y: 0, width: W, height: H, class: 'sea' }));
  if (!pts.length) {
    const t = svg('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' });
    t.textContent = 'no GPS point';
    s.appendChild(t);
    box.appendChild(s);
    return;
  }
  const lat0 = pts.reduce((a, p) => a + p.lat, 0) / pts.length;
  const lon0 = pts.reduce((a, p) => a + p.lon, 0) / pts.length;
  const kx = 111320 * Math.cos(lat0 * Math.PI / 180), ky = 110540;
  const xy = (lat, lon) => [(lon - lon0) * kx, (lat - lat0) * ky];
  let span = 60;                               // metres shown at least
  for (const p of pts) {
    const [x, y] = xy(p.lat, p.lon);
    span = Math.max(span, Math.abs(x) * 2.4, Math.abs(y) * 2.4 * W / H);
  }
  const scale = (W - 2 * M) / span;            // px per metre
  const px = (lat, lon) => { const [x, y] = xy(lat, lon); return [W / 2 + x * scale, H / 2 - y * scale]; };

  if (shape && shape.ring) {
    const ring = shape.ring.split(',').map((t) => t.trim().split(/\s+/).map(Number))
      .filter((a) => a.length === 2 && isFinite(a[0]) && isFinite(a[1]));
    if (ring.length > 2) {
      const d = ring.map((a) => px(a[0], a[1]).map((v) => v.toFixed(1)).join(' ')).join(' ');
      s.appendChild(svg('polygon', { points: d, class: 'desa' }));
    }
  }
  for (const p of pts) {
    const [x, y] = px(p.lat, p.lon);
    const g = svg('g', {});
    const title = svg('title', {});
    title.textContent = (p.kind === 'visit' ? 'visit ' + p.visit_id + ' · ' + p.outcome + ' · ' +
      (p.name || p.user || p.device) + ' · ' + when(p.at) : 'household ' + p.household_id) +
      ' (' + p.lat.toFixed(6) + ', ' + p.lon.toFixed(6) + ')';
    g.appendChild(title);
    if (p.kind === 'visit') {
      if (p.accuracy_m) g.appendChild(svg('circle', { cx: x, cy: y, r: Math.max(2, p.accuracy_m * scale),
                                                      class: 'acc ' + p.role }));
      g.appendChild(svg('circle', { cx: x, cy: y, r: 5, class: 'visit ' + p.role }));
    } else {
      g.appendChild(svg('rect', { x: x - 6, y: y - 6, width: 12, height: 12, class: 'home ' + p.role }));
    }
    const label = svg('text', { x: x + 8, y: y - 8, class: 'label' });
    label.textContent = p.kind === 'visit' ? p.outcome + ' · ' + (p.user || p.device) : p.household_id;
    g.appendChild(label);
    s.appendChild(g);
  }
  // scale bar: a round number of metres about a quarter of the width
  const want = span / 4, pow = Math.pow(10, Math.floor(Math.log10(want)));
  const m = [1, 2, 5, 10].map((k) => k * pow).filter((v) => v <= want).pop() || pow;
  const len = m * scale;
  s.appendChild(svg('line', { x1: M, y1: H - M, x2: M + len, y2: H - M, class: 'bar' }));
  const t = svg('text', { x: M, y: H - M - 6, class: 'label' });
  t.textContent = m >= 1000 ? (m / 1000) + ' km' : m + ' m';
  s.appendChild(t);
  box.appendChild(s);
}

// ---- summary per desa ---------------------------------------------------------------------------

async function loadSummary() {
  let j;
  try { j = await api('GET', 'summary'); } catch (e) { return; }
  const sel = $('f-desa');
  const keep = sel.value;
  while (sel.options.length > 1) sel.remove(1);
  const tb = $('sum').tBodies[0], tf = $('sum').tFoot;
  clear(tb); clear(tf);
  const row = (d, code, name) => {
    const tr = el('tr');
    for (const v of [code, name, d.households, d.visited, d.pending]) tr.appendChild(el('td', v));
    const td = el('td');
    const s = svg('svg', { width: 120, height: 12, viewBox: '0 0 120 12' });
    s.appendChild(svg('rect', { x: 0, y: 0, width: 120, height: 12, class: 'track' }));
    const w = d.households ? Math.round(120 * d.visited / d.households) : 0;
    s.appendChild(svg('rect', { x: 0, y: 0, width: w, height: 12, class: 'done' }));
    const title = svg('title', {});
    title.textContent = (d.households ? Math.round(100 * d.visited / d.households) : 0) + '% visited';
    s.appendChild(title);
    td.appendChild(s);
    tr.appendChild(td);
    for (const v of [d.conflicts_open, d.conflicts_resolved, d.tasks]) tr.appendChild(el('td', v));
    return tr;
  };
  for (const d of j.desa) {
    tb.appendChild(row(d, d.desa, d.name || '—'));
    const o = el('option', d.desa + (d.name ? ' · ' + d.name : ''));
    o.value = d.desa;
    sel.appendChild(o);
  }
  sel.value = keep;
  tf.appendChild(row(j.total, 'all', 'kecamatan ' + j.area));
}

// ---- start: an open session continues ---------------------------------------------------------

api('GET', 'me').then(loggedIn, loggedOut);
