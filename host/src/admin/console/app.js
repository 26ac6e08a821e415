'use strict';
// The operator's console of `host serve`: a thin client of the admin JSON API.
// Every string from the API is user data (keys, values, errors), so the DOM is built with
// textContent only: there is no innerHTML anywhere in this file.

const POLL_MS = 2000;
const PLUGINS_EVERY = 5; // the registry changes rarely: re-read it every 5th poll (and after uploads)
const TOKEN_KEY = 'streamhost.adminToken';

const S = {
  ready: false, // /v1/info, /v1/plugins and /v1/jobs have answered once
  rendered: false, tokenRequired: false, plugins: [], jobs: [], pluginsSig: '', detailId: null,
  // Sequence numbers: an answer that a newer query (or another job's panel) overtook is dropped.
  state: { seq: 0, prefix: '', cursor: null, count: 0 }, dlqSeq: 0, jobsSeq: 0, jobsShown: 0,
  swapChoice: new Map(), // job id -> picked "name@version", so a poll does not undo the pick
  ticks: 0, timer: null, deferred: false, pressedAt: 0, swapTouched: 0,
};

const $ = (sel, root = document) => root.querySelector(sel);
const enc = encodeURIComponent;
const ref = (name, version) => `${name}@${version}`;
const cmpVersion = (a, b) => a.localeCompare(b, undefined, { numeric: true });
const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;

function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('data-') || k === 'href' || k === 'type') el.setAttribute(k, v);
    else el[k] = v;
  }
  // append() turns strings into text nodes: never parsed as markup.
  for (const kid of kids) if (kid != null) el.append(kid);
  return el;
}

const pad = (n) => String(n).padStart(2, '0');
function fmtTime(ms) {
  if (ms == null) return '';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
const fmtSize = (n) => (n == null ? '' : n < 1024 ? `${n} B`
  : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(1)} MiB`);
const fmtRate = (v) => (v >= 10 ? String(Math.round(v)) : String(Math.round(v * 10) / 10));
const shortDigest = (d) => (d || '').replace(/^((?:sha256:)?[0-9a-f]{12})[0-9a-f]*$/i, '$1');
// DLQ answers name the version "name@1.0.0", job views split it: accept both.
const withName = (pv, name) => (pv && !pv.includes('@') && name ? ref(name, pv) : pv || '');

// ---- API ----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, reason, message) { super(message); Object.assign(this, { status, reason }); }
}

const currentToken = () => $('#token').value.trim();

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (method !== 'GET') {
    const token = currentToken();
    if (token) init.headers.Authorization = `Bearer ${token}`;
  }
  if (body instanceof Blob) {
    init.body = body;
    init.headers['Content-Type'] = 'application/wasm';
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'network', `cannot reach the server: ${e.message}`);
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON (a proxy's page): the status line will do */ }
  if (!res.ok) {
    throw new ApiError(res.status, data?.reason ?? null, data?.error || `${res.status} ${res.statusText}`.trim());
  }
  return data;
}

// `from` tells who set the banner, so a poll that succeeds again clears only its own error.
function showError(err, where, from = 'action') {
  let msg = err.message;
  if (err.status === 401) msg += ' (enter the admin token at the top and press save)';
  const banner = $('#last-error');
  banner.textContent = msg;
  banner.dataset.from = from;
  if (where) setNote(where, msg, true);
}
function clearError(from) {
  const banner = $('#last-error');
  if (!from || banner.dataset.from === from) banner.textContent = '';
}
function setNote(el, text, isError = false) {
  el.textContent = text;
  el.classList.toggle('err', isError);
}

// ---- access mode ----------------------------------------------------------------------------

const readOnly = () => S.tokenRequired && !currentToken();

// A control is usable when the mode allows changes and its own condition (data-off) holds.
function gate(el) {
  el.disabled = readOnly() || el.dataset.off === '1';
}

function applyMode() {
  const ro = readOnly();
  const mode = $('#mode');
  mode.textContent = ro ? 'read-only' : 'admin';
  mode.className = `mode ${ro ? 'ro' : 'admin'}`;
  mode.title = ro ? 'the server needs an admin token for changes: enter it to enable them'
    : S.tokenRequired ? 'changes are sent with your token' : 'this server needs no token for changes';
  document.body.classList.toggle('read-only', ro);
  for (const el of document.querySelectorAll('.mutating')) gate(el);
}

// ---- rendering ------------------------------------------------------------------------------

// Replacing a table under a pressed pointer loses the click (mousedown and mouseup land on
// different nodes), and replacing an open <select> closes it: hold renders meanwhile. A
// select counts as open from a press or key on it until it reports a choice (change).
function renderHeld() {
  const now = performance.now();
  if (S.pressedAt && now - S.pressedAt < 3000) return true;
  const a = document.activeElement;
  return S.swapTouched > 0 && now - S.swapTouched < 15000 && !!a?.matches?.('#jobs select.swap');
}

function renderAll() {
  if (!S.ready) return;
  if (renderHeld()) {
    S.deferred = true;
    return;
  }
  S.deferred = false;
  renderPlugins();
  renderJobs();
  updateDetail();
}

function versionsByName() {
  const m = new Map();
  for (const p of S.plugins) (m.get(p.name) ?? m.set(p.name, []).get(p.name)).push(p.version);
  return m;
}

function renderPlugins() {
  const usedBy = new Map();
  for (const j of S.jobs) {
    const r = ref(j.plugin_name, j.plugin_version);
    (usedBy.get(r) ?? usedBy.set(r, []).get(r)).push(j.id);
  }
  // Polls rarely change this table: skip rebuilding it (and the form's select) when equal.
  const sig = JSON.stringify([S.plugins, [...usedBy], readOnly()]);
  if (sig === S.pluginsSig) return;
  S.pluginsSig = sig;
  const rows = S.plugins.map((p) => {
    const r = ref(p.name, p.version);
    const users = usedBy.get(r) ?? [];
    const del = h('button', {
      type: 'button', class: 'delete-plugin mutating danger', text: 'delete',
      title: users.length ? `used by ${plural(users.length, 'job', 'jobs')}: the server will refuse` : `delete ${r}`,
    });
    gate(del);
    return h('tr', { 'data-plugin': r },
      h('td', { class: 'name', text: p.name }),
      h('td', { class: 'version', text: p.version }),
      h('td', { class: 'digest' }, h('code', { text: shortDigest(p.digest), title: p.digest })),
      h('td', { class: 'size num', text: fmtSize(p.size), title: `${p.size} bytes` }),
      h('td', { class: 'pushed', text: fmtTime(p.pushed_at_ms) }),
      h('td', { class: 'used-by', title: users.join(', ') }, h('div', { class: 'clamp', text: users.join(', ') })),
      h('td', { class: 'actions' }, del));
  });
  $('#plugins tbody').replaceChildren(...rows);
  $('#plugins-empty').hidden = rows.length > 0;

  const sel = $('#new-job-plugin');
  const keep = sel.value;
  sel.replaceChildren(...S.plugins.map((p) => h('option', { value: ref(p.name, p.version), text: ref(p.name, p.version) })));
  if (!S.plugins.length) sel.append(h('option', { value: '', text: '(no plugins: upload one)' }));
  if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
}

const SVG = 'http://www.w3.org/2000/svg';
const W = 80, H = 18;
// A job gets a new rate sample every 5 s but is redrawn every 2 s: reuse the computed line.
const sparkCache = new Map(); // job id -> { key, points, peak }
function sparkPoints(id, samples) {
  const last = samples[samples.length - 1];
  const key = `${samples.length}:${samples[0]?.[0]}:${last?.[0]}:${last?.[1]}`;
  const hit = sparkCache.get(id);
  if (hit?.key === key) return hit;
  const pts = samples.filter((s) => Number.isFinite(s?.[0]) && Number.isFinite(s?.[1]));
  let points = '', peak = 0;
  if (pts.length > 1) {
    const t0 = pts[0][0], span = pts[pts.length - 1][0] - t0 || 1;
    peak = Math.max(...pts.map((s) => s[1]));
    const max = peak || 1;
    points = pts.map(([t, v]) =>
      `${(((t - t0) / span) * W).toFixed(1)},${(H - 1 - (v / max) * (H - 2)).toFixed(1)}`).join(' ');
  }
  const out = { key, points, peak };
  sparkCache.set(id, out);
  return out;
}
function sparkline({ points }) {
  const svg = document.createElementNS(SVG, 'svg');
  for (const [k, v] of [['class', 'spark'], ['width', W], ['height', H], ['viewBox', `0 0 ${W} ${H}`]]) svg.setAttribute(k, v);
  if (points) {
    const line = document.createElementNS(SVG, 'polyline');
    line.setAttribute('points', points);
    svg.append(line);
  }
  return svg;
}

// `off`: the row's own reason to disable it; `hidden`: not offered at all in this status.
function button(cls, text, off, title, hidden = false) {
  const b = h('button', { type: 'button', class: `${cls} mutating`, text, title, hidden });
  b.dataset.off = off ? '1' : '';
  gate(b);
  return b;
}

function jobRow(j, versions) {
  const current = ref(j.plugin_name, j.plugin_version);
  const lags = (j.partitions ?? []).map((p) => p.lag).filter((l) => l != null);
  const stopped = j.status === 'stopped';
  const startable = stopped || j.status === 'failed';
  const rate = j.rate ?? [];
  const last = rate.length ? rate[rate.length - 1][1] : null;
  const spark = sparkPoints(j.id, rate);

  const refs = (versions.get(j.plugin_name) ?? []).map((v) => ref(j.plugin_name, v));
  if (!refs.includes(current)) refs.push(current);
  const picked = S.swapChoice.get(j.id);
  const chosen = refs.includes(picked) ? picked : current;
  const swap = h('select', { class: 'swap mutating', title: `hot-swap to another version of ${j.plugin_name}` },
    ...refs.map((r) => h('option', { value: r, text: r })));
  swap.value = chosen;
  gate(swap);

  return h('tr', { 'data-job': j.id, class: j.id === S.detailId ? 'open' : null },
    h('td', { class: 'id' }, h('a', { href: `#job=${enc(j.id)}`, class: 'open-job', text: j.id })),
    h('td', { class: 'status', title: j.error ?? '' }, h('span', { class: `badge st-${j.status}`, text: j.status })),
    h('td', { class: 'plugin', text: current }),
    h('td', { class: 'records num', text: j.records ?? 0 }),
    h('td', { class: 'lag num', text: lags.length ? lags.reduce((a, b) => a + b, 0) : '?' }),
    // A title attribute rather than an SVG <title>: that would leak into the cell's text.
    h('td', { class: 'rate', title: rate.length ? `records/s, a sample every 5 s; peak ${fmtRate(spark.peak)}/s` : 'no samples yet' },
      sparkline(spark), h('span', { text: last == null ? '–' : `${fmtRate(last)}/s` })),
    h('td', { class: 'errors num', text: j.errors ?? 0 }),
    h('td', { class: 'dead-lettered num', text: j.dead_lettered ?? 0 }),
    h('td', { class: 'actions' },
      button('stop', 'stop', stopped, `stop ${j.id}: its definition stays`, stopped),
      button('start', 'start', !startable, `start ${j.id} again`, !startable), swap,
      button('swap-go', 'swap', false, 'switch the job to the selected version'),
      button('delete danger', 'delete', false, `delete job ${j.id}`)));
}

function jobMatches(j, f) {
  return j.id.toLowerCase().includes(f) || j.status.includes(f) ||
    ref(j.plugin_name, j.plugin_version).toLowerCase().includes(f);
}

function renderJobs() {
  const tbody = $('#jobs tbody');
  // Remember which control had the keyboard focus, to give it back on the new row.
  const a = document.activeElement;
  const focus = tbody.contains(a) ? { job: a.closest('tr')?.dataset.job, cls: a.classList[0] } : null;

  const filter = $('#jobs-filter').value.trim().toLowerCase();
  const versions = versionsByName();
  const counts = { running: 0, waiting: 0, failed: 0, stopped: 0 };
  const frag = document.createDocumentFragment();
  if (sparkCache.size > S.jobs.length) sparkCache.clear(); // jobs were deleted
  for (const j of S.jobs) {
    counts[j.status] = (counts[j.status] ?? 0) + 1;
    if (!filter || jobMatches(j, filter)) frag.append(jobRow(j, versions));
  }
  tbody.replaceChildren(frag);
  $('#jobs-empty').hidden = tbody.rows.length > 0;
  $('#jobs-empty').textContent = S.jobs.length ? 'no job matches the filter' : 'no jobs';
  $('#jobs-summary').textContent =
    `${S.jobs.length} jobs: ${counts.running} running, ${counts.waiting} waiting, ${counts.failed} failed, ${counts.stopped} stopped`;
  if (focus?.job && focus.cls) {
    tbody.querySelector(`tr[data-job="${CSS.escape(focus.job)}"] .${CSS.escape(focus.cls)}`)?.focus({ preventScroll: true });
  }

  if (S.rendered) {
    window.consoleRenders = (window.consoleRenders || 0) + 1;
  } else {
    S.rendered = true;
    window.consoleRenderedAt = performance.now();
    document.body.classList.add('rendered');
  }
}

// ---- details panel --------------------------------------------------------------------------

// Opening a job (or closing the panel) forgets the previous job's queries and answers.
function setDetail(id) {
  S.detailId = id;
  S.dlqSeq++;
  S.state = { seq: S.state.seq + 1, prefix: '', cursor: null, count: 0 };
  const panel = $('#job-detail');
  panel.dataset.job = id ?? '';
  panel.hidden = id == null;
  for (const el of ['#state-results tbody', '#dead-letters tbody', '#partitions tbody', '#recent-errors']) $(el).replaceChildren();
  for (const el of ['#state-status', '#dlq-replay-result', '#dlq-status']) setNote($(el), '');
  $('#state-more').hidden = true;
  for (const tr of document.querySelectorAll('#jobs tr.open')) tr.classList.remove('open');
  history.replaceState(null, '', id == null ? location.pathname + location.search : `#job=${enc(id)}`);
}

function openJob(id) {
  setDetail(id);
  document.querySelector(`#jobs tr[data-job="${CSS.escape(id)}"]`)?.classList.add('open');
  updateDetail();
  loadDeadLetters();
  $('#job-detail').scrollIntoView({ block: 'start' });
}
const closeJob = () => setDetail(null);

// Called on every poll: only the parts that come with the jobs list. The state search and
// the dead letters are the operator's own queries and stay as they are.
function updateDetail() {
  if (!S.detailId) return;
  const j = S.jobs.find((x) => x.id === S.detailId);
  $('#detail-id').textContent = S.detailId;
  const badge = $('#detail-status');
  badge.textContent = j?.status ?? 'not found';
  badge.className = `badge st-${j?.status ?? 'failed'}`;
  if (!j) return;
  $('#detail-plugin').textContent = ref(j.plugin_name, j.plugin_version);
  $('#detail-digest').textContent = j.plugin_digest ?? '';
  $('#detail-error').textContent = j.error ?? '';
  $('#partitions tbody').replaceChildren(...(j.partitions ?? []).map((p) =>
    h('tr', { 'data-partition': `${p.topic}/${p.partition}` },
      h('td', { class: 'topic', text: p.topic }),
      h('td', { class: 'partition num', text: p.partition }),
      h('td', { class: 'committed num', text: p.committed }),
      h('td', { class: 'end num', text: p.end ?? '?' }),
      h('td', { class: 'lag num', text: p.lag ?? '?' }))));
  $('#recent-errors').replaceChildren(...(j.recent_errors ?? []).map((e) => {
    const where = `${e.topic}/${e.partition}${e.offset == null ? '' : `@${e.offset}`}`;
    return h('li', { class: `kind-${e.kind}` },
      h('time', { text: fmtTime(e.at_ms) }), ' ',
      h('span', { class: 'kind', text: e.kind }), ' ',
      h('span', { class: 'where', text: where }), ' ',
      h('span', { class: 'message', text: e.message }));
  }));
}

function stateRow(e) {
  return h('tr', {},
    h('td', { class: 'key', text: e.key }),
    h('td', { class: 'value', text: e.value ?? '', title: e.encoding === 'base64' ? 'base64 of the bytes' : null }),
    h('td', { class: 'encoding', text: e.encoding }),
    h('td', { class: 'partition num', text: e.partition ?? '—' }));
}

async function stateSearch(more) {
  const id = S.detailId;
  const st = S.state;
  if (!id) return;
  if (!more) Object.assign(st, { prefix: $('#state-prefix').value, cursor: null, count: 0 });
  const seq = ++st.seq;
  const q = new URLSearchParams({ prefix: st.prefix, limit: '100' });
  if (more && st.cursor != null) q.set('cursor', st.cursor);
  setNote($('#state-status'), 'searching…');
  try {
    const data = await api('GET', `/v1/jobs/${enc(id)}/state?${q}`);
    if (seq !== S.state.seq || id !== S.detailId) return;
    const rows = (data?.entries ?? []).map(stateRow);
    if (more) $('#state-results tbody').append(...rows);
    else $('#state-results tbody').replaceChildren(...rows);
    st.count += rows.length;
    st.cursor = data?.cursor ?? null;
    $('#state-more').hidden = st.cursor == null;
    setNote($('#state-status'), `${plural(st.count, 'key', 'keys')} shown`);
  } catch (e) {
    if (seq === S.state.seq) showError(e, $('#state-status'));
  }
}

async function stateGet() {
  const id = S.detailId;
  const key = $('#state-key').value;
  if (!id) return;
  if (!key) return setNote($('#state-status'), 'enter a key', true);
  const seq = ++S.state.seq;
  setNote($('#state-status'), 'looking up…');
  const done = () => seq === S.state.seq && id === S.detailId;
  try {
    const e = await api('GET', `/v1/jobs/${enc(id)}/state/${enc(key)}`);
    if (!done()) return;
    $('#state-results tbody').replaceChildren(stateRow(e));
    setNote($('#state-status'), '1 key shown');
  } catch (e) {
    if (!done()) return;
    $('#state-results tbody').replaceChildren();
    // An absent key is an answer, not a failure: it stays out of the error banner.
    if (e.status === 404 && e.reason === 'no_key') setNote($('#state-status'), `no key ${key}`);
    else showError(e, $('#state-status'));
  }
  Object.assign(S.state, { cursor: null, count: 0 });
  $('#state-more').hidden = true;
}

async function loadDeadLetters() {
  const id = S.detailId;
  if (!id) return;
  const seq = ++S.dlqSeq;
  setNote($('#dlq-status'), 'loading…');
  try {
    const d = await api('GET', `/v1/jobs/${enc(id)}/dead-letters?limit=50`);
    if (seq !== S.dlqSeq || id !== S.detailId) return;
    const job = S.jobs.find((x) => x.id === id);
    const records = d?.records ?? [];
    const topic = d?.topic ?? null;
    $('#dlq-topic').textContent = topic ?? 'none';
    $('#dlq-total').textContent = d?.total ?? 0;
    $('#dlq-replay').dataset.off = topic == null ? '1' : '';
    gate($('#dlq-replay'));
    $('#dead-letters tbody').replaceChildren(...records.map((r) =>
      h('tr', { 'data-dlq': `${r.dlq_partition}:${r.dlq_offset}`, class: r.replayed ? 'replayed' : null },
        h('td', { class: 'when', text: fmtTime(r.timestamp_ms) }),
        h('td', { class: 'source', text: `${r.source_topic}/${r.source_partition}@${r.source_offset}` }),
        h('td', { class: 'error', text: r.error ?? '' }),
        h('td', { class: 'plugin-version', text: withName(r.plugin_version, r.plugin ?? job?.plugin_name), title: r.plugin_digest }),
        h('td', { class: 'attempts num', text: r.attempts ?? '' }),
        h('td', { class: 'key', text: r.key ?? '' }),
        h('td', { class: 'value', text: r.value ?? '', title: r.encoding === 'base64' ? 'base64 of the bytes' : null }),
        h('td', { class: 'replayed', text: r.replayed ? 'yes' : 'no' }))));
    setNote($('#dlq-status'), topic == null ? 'this job has no dead-letter topic'
      : records.length < (d?.total ?? 0) ? `the newest ${records.length} shown` : '');
  } catch (e) {
    if (seq === S.dlqSeq) showError(e, $('#dlq-status'));
  }
}

async function replayDeadLetters() {
  const id = S.detailId;
  const out = $('#dlq-replay-result');
  setNote(out, 'replaying…');
  await busy($('#dlq-replay'), async () => {
    try {
      const r = await api('POST', `/v1/jobs/${enc(id)}/dead-letters/replay`, {});
      const job = S.jobs.find((x) => x.id === id);
      setNote(out, `replayed ${r.replayed}, already replayed ${r.already_replayed}, ` +
        `skipped ${r.skipped} through ${withName(r.plugin_version, job?.plugin_name)}`);
      clearError('action');
    } catch (e) {
      showError(e, out);
    }
  });
  loadDeadLetters();
  tick();
}

// ---- actions ------------------------------------------------------------------------------

// Runs fn with btn disabled, so a double click does not send the call twice.
async function busy(btn, fn) {
  btn.disabled = true;
  try {
    return await fn();
  } finally {
    if (btn.isConnected) gate(btn);
  }
}

// A row's action: its answer shows in the jobs table at once, its error in the banner.
const act = (btn, method, path, body) => busy(btn, async () => {
  try {
    const out = await api(method, path, body);
    clearError('action');
    return out ?? true;
  } catch (e) {
    showError(e);
    return null;
  } finally {
    tick();
  }
});

async function onJobsClick(ev) {
  const t = ev.target.closest('a.open-job, button');
  const id = t?.closest('tr')?.dataset.job;
  if (id == null) return;
  const path = `/v1/jobs/${enc(id)}`;
  if (t.matches('a.open-job')) {
    ev.preventDefault();
    openJob(id);
  } else if (t.matches('.stop')) {
    await act(t, 'POST', `${path}/stop`);
  } else if (t.matches('.start')) {
    await act(t, 'POST', `${path}/start`);
  } else if (t.matches('.swap-go')) {
    const plugin = t.closest('tr').querySelector('select.swap').value;
    const job = S.jobs.find((x) => x.id === id);
    if (job && plugin === ref(job.plugin_name, job.plugin_version)) {
      $('#last-error').textContent = `${id} already runs ${plugin}: pick another version to swap to`;
      $('#last-error').dataset.from = 'action';
    } else if (await act(t, 'PATCH', path, { plugin })) {
      S.swapChoice.delete(id);
    }
  } else if (t.matches('.delete')) {
    if (!confirm(`Delete job ${id}? Its definition is removed; its state and topics stay.`)) return;
    if (await act(t, 'DELETE', path) && S.detailId === id) closeJob();
  }
}

function onSwapChange(ev) {
  if (!ev.target.matches('select.swap')) return;
  S.swapChoice.set(ev.target.closest('tr').dataset.job, ev.target.value);
  S.swapTouched = 0; // a choice was made: the dropdown is closed, renders may go on
}

async function onPluginsClick(ev) {
  const t = ev.target.closest('button.delete-plugin');
  if (!t) return;
  const r = t.closest('tr').dataset.plugin;
  const at = r.lastIndexOf('@');
  if (await act(t, 'DELETE', `/v1/plugins/${enc(r.slice(0, at))}/${enc(r.slice(at + 1))}`)) {
    setNote($('#upload-result'), `deleted ${r}`);
  }
  await refreshPlugins().catch((e) => showError(e));
  renderAll();
}

async function upload(ev) {
  ev.preventDefault();
  const file = $('#upload-file').files[0];
  const name = $('#upload-name').value.trim();
  const version = $('#upload-version').value.trim();
  const out = $('#upload-result');
  if (!file || !name || !version) return setNote(out, 'choose a .wasm file and give a name and a version', true);
  setNote(out, `uploading ${ref(name, version)} (${fmtSize(file.size)})…`);
  await busy($('#upload-submit'), async () => {
    try {
      const e = await api('PUT', `/v1/plugins/${enc(name)}/${enc(version)}`, file);
      clearError('action');
      // The table and the job form's select show the new version by the time the note says so.
      await refreshPlugins().catch((err) => showError(err));
      renderAll();
      setNote(out, `uploaded ${ref(e?.name ?? name, e?.version ?? version)} (${e?.digest ?? '?'})`);
    } catch (e) {
      showError(e, out);
    }
  });
}

async function createJob(ev) {
  ev.preventDefault();
  const out = $('#new-job-result');
  const id = $('#new-job-id').value.trim();
  const plugin = $('#new-job-plugin').value;
  const topics = $('#new-job-topics').value.split(',').map((t) => t.trim()).filter(Boolean);
  if (!id || !plugin || !topics.length) return setNote(out, 'a job needs an id, a plugin and an input topic', true);
  const spec = { id, plugin, topics, settings: { on_error: $('#new-job-on-error').value } };
  const output = $('#new-job-output').value.trim();
  const dlq = $('#new-job-dlq').value.trim();
  if (output) spec.output_topic = output;
  if (dlq) spec.settings.dlq_topic = dlq;
  await busy($('#new-job-submit'), async () => {
    try {
      const j = await api('POST', '/v1/jobs', spec);
      setNote(out, `created ${j?.id ?? id} (${j?.status ?? 'starting'})`);
      clearError('action');
      $('#new-job-id').value = '';
    } catch (e) {
      showError(e, out);
    }
  });
  tick();
}

// ---- polling ------------------------------------------------------------------------------

const sortPlugins = (list) =>
  (list ?? []).slice().sort((a, b) => a.name.localeCompare(b.name) || cmpVersion(a.version, b.version));

async function refreshPlugins() {
  S.plugins = sortPlugins((await api('GET', '/v1/plugins'))?.plugins);
}

async function refreshJobs() {
  const seq = ++S.jobsSeq;
  const data = await api('GET', '/v1/jobs');
  if (seq < S.jobsShown) return; // an older answer overtaken by a newer one
  S.jobsShown = seq;
  S.jobs = data?.jobs ?? [];
}

function schedule() {
  clearTimeout(S.timer);
  if (document.visibilityState !== 'hidden') S.timer = setTimeout(tick, POLL_MS);
}

// One poll; also called right after a change so the table shows its effect at once.
async function tick() {
  clearTimeout(S.timer);
  if (!S.ready) return;
  try {
    if (++S.ticks % PLUGINS_EVERY === 0) await refreshPlugins();
    await refreshJobs();
    clearError('poll');
    renderAll();
  } catch (e) {
    showError(e, null, 'poll');
  }
  schedule();
}

async function init() {
  $('#token').value = sessionStorage.getItem(TOKEN_KEY) ?? '';
  applyMode();
  const [info, plugins, jobs] = await Promise.allSettled(
    [api('GET', '/v1/info'), api('GET', '/v1/plugins'), api('GET', '/v1/jobs')]);
  if (info.status === 'fulfilled') {
    S.tokenRequired = !!info.value?.token_required;
    $('#server-version').textContent = info.value?.version ? `v${info.value.version}` : '';
  }
  if (plugins.status === 'fulfilled') S.plugins = sortPlugins(plugins.value?.plugins);
  if (jobs.status === 'fulfilled') S.jobs = jobs.value?.jobs ?? [];
  for (const r of [info, plugins, jobs]) if (r.status === 'rejected') showError(r.reason, null, 'poll');
  S.ready = true;
  applyMode();
  renderAll();
  const m = /^#job=(.+)$/.exec(location.hash);
  if (m) openJob(decodeURIComponent(m[1]));
  schedule();
}

function wire() {
  $('#token').addEventListener('input', applyMode);
  $('#token-save').addEventListener('click', () => {
    const t = currentToken();
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    else sessionStorage.removeItem(TOKEN_KEY);
    applyMode();
    $('#token-save').textContent = 'saved';
    setTimeout(() => { $('#token-save').textContent = 'save'; }, 1200);
  });
  $('#last-error').addEventListener('click', () => clearError());
  $('#jobs tbody').addEventListener('click', onJobsClick);
  $('#jobs tbody').addEventListener('change', onSwapChange);
  $('#jobs tbody').addEventListener('input', onSwapChange);
  for (const type of ['pointerdown', 'keydown']) {
    $('#jobs tbody').addEventListener(type, (e) => {
      if (e.target.matches?.('select.swap')) S.swapTouched = performance.now();
    });
  }
  $('#jobs-filter').addEventListener('input', () => S.ready && renderJobs());
  $('#plugins tbody').addEventListener('click', onPluginsClick);
  $('#upload-form').addEventListener('submit', upload);
  $('#upload-file').addEventListener('change', () => {
    const f = $('#upload-file').files[0];
    const name = $('#upload-name');
    // Fill the name from the file unless the operator typed one.
    if (f && (!name.value.trim() || name.dataset.auto === name.value)) {
      name.value = f.name.replace(/\.wasm$/i, '');
      name.dataset.auto = name.value;
    }
  });
  $('#new-job-form').addEventListener('submit', createJob);
  $('#detail-close').addEventListener('click', closeJob);
  $('#state-search-form').addEventListener('submit', (e) => { e.preventDefault(); stateSearch(false); });
  $('#state-get-form').addEventListener('submit', (e) => { e.preventDefault(); stateGet(); });
  $('#state-more').addEventListener('click', () => stateSearch(true));
  $('#dlq-refresh').addEventListener('click', loadDeadLetters);
  $('#dlq-replay').addEventListener('click', replayDeadLetters);

  document.addEventListener('pointerdown', () => { S.pressedAt = performance.now(); }, true);
  const release = () => {
    S.pressedAt = 0;
    // After the click has been dispatched: the deferred render must not eat it.
    if (S.deferred) setTimeout(renderAll, 0);
  };
  document.addEventListener('pointerup', release, true);
  document.addEventListener('pointercancel', release, true);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') tick();
    else clearTimeout(S.timer);
  });
}

wire();
init();
