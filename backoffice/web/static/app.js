// camvault backoffice: the little script the server-rendered pages need.
// Everything that changes state goes through the JSON API with the
// session's CSRF token; nothing here is trusted by the server.
'use strict';

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
const csrf = () => ($('meta[name="csrf"]') || {}).content || '';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const once = (target, type) => new Promise((r) => target.addEventListener(type, r, { once: true }));

// api calls the JSON API; a refusal becomes an Error with the server's words.
async function api(method, path, body) {
  const opt = { method, headers: { 'X-CSRF-Token': csrf() }, credentials: 'same-origin' };
  if (body !== undefined) {
    opt.headers['Content-Type'] = 'application/json';
    opt.body = JSON.stringify(body);
  }
  const r = await fetch(path, opt);
  const text = await r.text();
  if (!r.ok) throw new Error(text.trim() || r.statusText);
  return text ? JSON.parse(text) : null;
}

function showError(el, err) {
  if (!el) return;
  el.textContent = err ? String(err.message || err) : '';
  el.hidden = !err;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? '' : String(c)));
  return e;
}

function formJSON(form) {
  const out = {};
  for (const [k, v] of new FormData(form)) out[k] = String(v);
  return out;
}

function humanDuration(ms) {
  if (ms <= 0) return 'due';
  const s = Math.floor(ms / 1000), d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  if (d > 0) return `${d} d ${h} h`;
  if (h > 0) return `${h} h ${m} m`;
  return `${m} m ${s % 60} s`;
}

// fmtTime is the one way every page shows an instant: in the viewer's
// time zone, with the zone named, "2026-12-07 09:36:23 CET". The zone's
// name is the browser locale's (an abbreviation where it has one, else
// "GMT+1"); the digits are always Latin, so the layout never changes.
const timeParts = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
  hourCycle: 'h23', timeZoneName: 'short', numberingSystem: 'latn',
});
function fmtTime(v) {
  const d = v instanceof Date ? v : new Date(v);
  if (Number.isNaN(d.getTime())) return String(v);
  const p = {};
  for (const { type, value } of timeParts.formatToParts(d)) p[type] = value;
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second} ${p.timeZoneName}`;
}

// showTimes rewrites the server's RFC 3339 instants (<time datetime>)
// into fmtTime's form; without the script the page still shows them.
function showTimes(root = document) {
  for (const t of $$('time[datetime]', root)) t.textContent = fmtTime(t.getAttribute('datetime'));
}

// timeEl is an instant as every page shows it.
const timeEl = (v) => el('time', { datetime: new Date(v).toISOString() }, fmtTime(v));

// deadlineText is a deletion deadline: how long until it, and when.
function deadlineText(deadline, held, now) {
  if (held) return 'on hold';
  if (!deadline) return '—';
  return `${humanDuration(Date.parse(deadline) - now)} (on ${fmtTime(deadline)})`;
}

// --- sign in and out ---
function setupLogin() {
  const form = $('#login');
  if (!form) return;
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      await api('POST', '/api/v1/login', formJSON(form));
      const next = new URLSearchParams(location.search).get('next') || '/';
      location.assign(next.startsWith('/') && !next.startsWith('//') ? next : '/');
    } catch (err) {
      showError($('#login-error'), err);
    }
  });
}

function setupLogout() {
  const b = $('#logout');
  if (!b) return;
  b.addEventListener('click', async () => {
    try { await api('POST', '/api/v1/logout'); } finally { location.assign('/login'); }
  });
}

// --- live alerts (server-sent events) ---
const alertTypes = ['camera.warning', 'camera.location', 'incident.assist', 'incident.started', 'incident.ended', 'incident.interrupted',
  'transcode.shed', 'storage.degraded', 'retention.deleted', 'hold.placed', 'hold.released'];

function describe(a) {
  const d = a.data || {};
  switch (a.type) {
    case 'camera.warning': return `warning ${d.n} spoken by ${d.officer || 'officer'} (${a.camera})`;
    case 'camera.location': return `${a.camera} at ${d.lat}, ${d.lon}`;
    case 'incident.assist': return `${d.officer || 'officer'} (${a.camera}) asks for assistance`;
    case 'incident.started': return `${a.camera} is recording (${d.officer || ''})`;
    case 'incident.ended': return `${a.camera} stopped recording`;
    case 'incident.interrupted': return `${a.camera} stream lost`;
    case 'hold.placed': return `legal hold ${d.reference || ''} by ${d.by || d.placed_by || ''}`;
    case 'hold.released': return `hold released`;
    default: return a.camera || '';
  }
}

// setupFeed shows the latest alerts the page was rendered with (the
// server chose them by the viewer's role, as the stream does), then the
// stream from exactly where they were read, so none is missed or shown
// twice; "no alerts yet" while there are none.
function setupFeed(onIncidentChange) {
  const feed = $('#feed');
  if (!feed) return;
  const state = $('#feed-state'), empty = $('#feed-empty');
  const item = (a, fresh) => {
    if ($(`li[data-id="${CSS.escape(String(a.id))}"]`, feed)) return;
    const li = el('li', { class: (fresh ? 'new ' : '') + 't-' + a.type.replace('.', '-'), 'data-type': a.type, 'data-id': String(a.id) },
      timeEl(a.at), el('span', { class: 'type' }, a.type), ' ', describe(a));
    if (a.incident) li.append(' ', el('a', { href: '/incidents/' + encodeURIComponent(a.incident) }, a.incident));
    feed.prepend(li);
    while (feed.children.length > 500) feed.lastChild.remove();
    if (a.type === 'incident.assist') assist(a);
    if (empty) empty.hidden = true;
  };
  let recent = [];
  try { recent = JSON.parse(($('#feed-recent') || {}).textContent || '[]') || []; } catch { recent = []; }
  for (const a of recent) item(a, false);
  if (empty) empty.hidden = feed.children.length > 0;
  const src = new EventSource('/api/v1/events?after=' + encodeURIComponent(feed.dataset.after || '0'));
  src.onopen = () => { state.textContent = 'live'; };
  src.onerror = () => { state.textContent = 'reconnecting…'; };
  const add = (ev) => {
    let a;
    try { a = JSON.parse(ev.data); } catch { return; }
    item(a, true);
    if (/^(incident|hold|retention)\./.test(a.type)) onIncidentChange();
  };
  for (const t of alertTypes) src.addEventListener(t, add);
}

// assist puts an officer's request at the top of the page.
function assist(a) {
  const box = $('#assist');
  if (!box) return;
  const li = el('li', { 'data-id': String(a.id) }, timeEl(a.at), ' ', describe(a));
  if (a.incident) li.append(' ', el('a', { href: '/incidents/' + encodeURIComponent(a.incident) }, a.incident));
  $('#assist-list').prepend(li);
  box.hidden = false;
}

// --- the live view (WHEP), for those allowed live.view ---
// The node ends a view at its grant's limit (or when the camera stops):
// the page sees the peer's DTLS close or the connection go, and says so
// over the last picture; its own countdown only waits for that, so the
// audit trail records the node's reason.
let live = null;

function stopLive(why) {
  const box = $('#live-viewer');
  if (live) {
    clearInterval(live.timer);
    if (!why && live.resource) fetch(live.resource, { method: 'DELETE' }).catch(() => {});
    live.pc.close();
    live = null;
  }
  if (!box) return;
  const ended = $('#live-ended');
  box.dataset.state = why ? 'ended' : '';
  ended.textContent = why || '';
  ended.hidden = !why;
  $('.live-stage', box).hidden = !why;
  $('#live-countdown').textContent = why ? 'ended' : '';
  if (why) {
    const form = $('#live-form');
    form.reset();
    form.hidden = false; // renewing is a new grant, with a new reason
  }
}

function watchLive(incident, camera) {
  const box = $('#live-viewer');
  stopLive('');
  box.hidden = false;
  box.dataset.incident = incident;
  $('#live-camera').textContent = camera;
  $('#live-form').hidden = false;
  showError($('#live-error'), null);
  $('#live-form textarea').focus();
}

function setupLive() {
  const box = $('#live-viewer');
  if (!box) return;
  $('#live-cancel').onclick = () => { stopLive(''); box.hidden = true; };
  $('#live-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const form = ev.target, errEl = $('#live-error');
    showError(errEl, null);
    stopLive('');
    const pc = new RTCPeerConnection();
    try {
      const video = $('#live-player');
      pc.addTransceiver('video', { direction: 'recvonly' });
      pc.addTransceiver('audio', { direction: 'recvonly' });
      pc.ontrack = (e) => { if (e.track.kind === 'video') video.srcObject = new MediaStream([e.track]); };
      await pc.setLocalDescription(await pc.createOffer());
      while (pc.iceGatheringState !== 'complete') await sleep(50);
      // The grant is bound to this connection's certificate.
      const fp = pc.localDescription.sdp.match(/a=fingerprint:(.*)/)[1].trim();
      const g = await api('POST', `/api/v1/incidents/${encodeURIComponent(box.dataset.incident)}/live`,
        { reason: formJSON(form).reason, fingerprint: fp });
      const r = await fetch(g.whep_url, { method: 'POST', body: pc.localDescription.sdp,
        headers: { 'Content-Type': 'application/sdp', Authorization: 'Bearer ' + g.token } });
      if (r.status !== 201) throw new Error((await r.text()).trim() || r.statusText);
      const loc = r.headers.get('Location');
      await pc.setRemoteDescription({ type: 'answer', sdp: await r.text() });
      const until = Date.parse(g.until);
      const over = () => {
        if (!live || live.pc !== pc) return;
        stopLive(Date.now() >= until - 1500
          ? 'Live view ended: the grant\'s time limit. Ask again with a new reason to go on watching.'
          : 'Live view ended: the camera stopped recording or the connection was lost.');
      };
      pc.onconnectionstatechange = () => { if (['failed', 'closed', 'disconnected'].includes(pc.connectionState)) over(); };
      for (const rc of pc.getReceivers()) {
        if (rc.transport) rc.transport.addEventListener('statechange', () => { if (rc.transport.state === 'closed') over(); });
      }
      live = { pc, resource: loc ? new URL(loc, g.whep_url).toString() : '', timer: 0 };
      form.hidden = true;
      $('#live-ended').hidden = true;
      $('.live-stage', box).hidden = false;
      box.dataset.state = 'watching';
      $('#live-who').textContent = g.person;
      video.play().catch(() => {});
      const show = () => {
        const now = Date.now();
        $('#live-clock').textContent = fmtTime(new Date(now));
        // Past the end, the node closes the view; a connection it could
        // not close (gone quiet) is closed here a little later.
        if (now >= until + 5000) { over(); return; }
        $('#live-countdown').textContent = now >= until ? 'ending…' : 'ends in ' + humanDuration(until - now);
      };
      show();
      live.timer = setInterval(show, 1000);
    } catch (err) {
      pc.close();
      showError(errEl, err);
    }
  });
}

// --- incident list ---
function setupIncidents() {
  const table = $('#incidents');
  if (!table) return () => {};
  const body = $('tbody', table);
  let pending = false;
  const load = async () => {
    if (pending) return;
    pending = true;
    await sleep(200); // several alerts at once: one reload
    pending = false;
    let list;
    try { list = await api('GET', '/api/v1/incidents'); } catch { return; }
    body.replaceChildren(...list.map((i) => {
      const tr = el('tr', { 'data-incident': i.id, 'data-status': i.status },
        el('td', {}, el('a', { href: '/incidents/' + encodeURIComponent(i.id) }, i.id)),
        el('td', {}, i.camera), el('td', {}, i.officer), el('td', {}, timeEl(i.started_at)),
        el('td', { class: 'duration', 'data-start': i.started_at, 'data-end': i.ended_at || '' }, ''),
        el('td', {}, i.status, i.held ? el('span', { class: 'badge hold' }, 'hold') : '',
          table.dataset.live === 'true' && i.status === 'open'
            ? el('button', { type: 'button', class: 'watch-live', 'data-incident': i.id, 'data-camera': i.camera }, 'watch') : ''),
        el('td', { class: 'deadline', 'data-deadline': i.retain_until || '', 'data-held': String(i.held) }, ''));
      return tr;
    }));
    for (const b of $$('button.watch-live', body)) b.onclick = () => watchLive(b.dataset.incident, b.dataset.camera);
    tick();
  };
  load();
  return load;
}

// tick refreshes every countdown and running duration once a second.
function tick() {
  const now = Date.now();
  for (const td of $$('.duration')) {
    const end = td.dataset.end ? Date.parse(td.dataset.end) : now;
    td.textContent = humanDuration(end - Date.parse(td.dataset.start));
  }
  for (const e of $$('.deadline')) e.textContent = deadlineText(e.dataset.deadline, e.dataset.held === 'true', now);
}

// --- the player: Media Source Extensions fed one segment at a time ---
let playToken = 0;

async function play(view, segments, from, incident) {
  const token = ++playToken;
  const video = $('#player');
  const errEl = $('#watch-error');
  showError(errEl, null);
  video.hidden = false;
  video.dataset.listed = String(segments.length);
  video.dataset.played = '0';
  const ms = new MediaSource();
  video.src = URL.createObjectURL(ms);
  await once(ms, 'sourceopen');
  let sb = null, type = '';
  for (let i = from; token === playToken; i++) {
    // At the end of what was recorded when the view opened: an incident
    // still recording gets more segments, which the view covers too.
    if (i >= segments.length && !(await follow(incident, segments, token))) break;
    const seg = segments[i];
    for (const tr of $$('#timeline tr.playing')) tr.classList.remove('playing');
    const row = $(`#timeline tr[data-seq="${seg.seq}"][data-session="${CSS.escape(seg.session)}"]`);
    if (row) row.classList.add('playing');
    let r;
    try {
      r = await fetch(`/api/v1/views/${encodeURIComponent(view)}/segments/${seg.seq}?session=${encodeURIComponent(seg.session)}`,
        { credentials: 'same-origin' });
    } catch (err) { showError(errEl, err); break; }
    if (!r.ok) { showError(errEl, new Error(`segment ${seg.seq}: ${(await r.text()).trim()}`)); break; }
    const t = r.headers.get('Content-Type');
    const buf = await r.arrayBuffer();
    if (token !== playToken) return;
    try {
      if (!sb) {
        sb = ms.addSourceBuffer(t);
        sb.mode = 'sequence'; // segments play back to back, whatever their timestamps
      } else if (t !== type && sb.changeType) {
        sb.changeType(t);
      }
      type = t;
      sb.appendBuffer(buf);
      await once(sb, 'updateend');
    } catch (err) { showError(errEl, err); break; }
    video.dataset.played = String(i - from + 1);
    if (i === from) video.play().catch(() => {});
    // Fetch ahead only a little: every fetch is a decryption and an audit record.
    while (token === playToken && sb.buffered.length && sb.buffered.end(sb.buffered.length - 1) - video.currentTime > 6) {
      await sleep(250);
    }
  }
  if (token !== playToken) return;
  if (!sb) showError(errEl, new Error('no footage was recorded'));
  else if (ms.readyState === 'open' && !sb.updating) ms.endOfStream();
}

// follow waits, while the incident is still open, for segments beyond
// those in the list, and appends them; false when there will be none.
async function follow(incident, segments, token) {
  while (token === playToken) {
    let d;
    try { d = await api('GET', `/api/v1/incidents/${encodeURIComponent(incident)}`); } catch { return false; }
    const known = new Set(segments.map((s) => `${s.session}/${s.seq}`));
    const fresh = d.segments.filter((s) => !known.has(`${s.session}/${s.seq}`));
    if (fresh.length) {
      segments.push(...fresh);
      return true;
    }
    if (d.status !== 'open') return false;
    await sleep(1000);
  }
  return false;
}

function setupViewer() {
  const form = $('#watch');
  if (!form) return;
  const id = $('#incident-id').textContent;
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    let opened;
    try {
      opened = await api('POST', `/api/v1/incidents/${encodeURIComponent(id)}/views`, formJSON(form));
    } catch (err) { showError($('#watch-error'), err); return; }
    for (const b of $$('#timeline button.seek')) {
      b.disabled = false;
      b.onclick = () => {
        const tr = b.closest('tr');
        const i = opened.segments.findIndex((s) => String(s.seq) === tr.dataset.seq && s.session === tr.dataset.session);
        if (i >= 0) play(opened.view, opened.segments, i, id);
      };
    }
    play(opened.view, opened.segments, 0, id);
  });
}

// --- forms that POST to the API (holds, export requests) ---
function setupAPIForms() {
  for (const form of $$('form.api')) {
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const err = form.parentElement.querySelector('.error');
      try {
        await api('POST', form.dataset.path, formJSON(form));
        location.reload();
      } catch (e) { showError(err, e); }
    });
  }
}

// --- exports: list, approve, download ---
async function setupExports() {
  const table = $('#exports');
  if (!table) return;
  const body = $('tbody', table);
  const load = async () => {
    let list;
    try { list = await api('GET', '/api/v1/exports'); } catch (e) { return; }
    const mine = list.filter((x) => x.incident === table.dataset.incident);
    body.replaceChildren(...mine.map((x) => {
      const action = el('td');
      if (x.state === 'requested' && x.requested_by !== table.dataset.me) {
        const b = el('button', { type: 'button', class: 'approve' }, 'Approve');
        b.onclick = async () => {
          b.disabled = true;
          try { await api('POST', `/api/v1/exports/${encodeURIComponent(x.id)}/approve`); } catch (e) { alert(e.message); }
          load();
        };
        action.append(b);
      } else if (x.state === 'ready') {
        action.append(el('a', { class: 'download', href: `/api/v1/exports/${encodeURIComponent(x.id)}/bundle` }, 'Download bundle'));
      } else if (x.state === 'requested') {
        action.append('waiting for a second admin');
      } else if (x.state === 'approved') {
        action.append('writing the bundle…');
      }
      return el('tr', { 'data-export': x.id, 'data-state': x.state },
        el('td', {}, timeEl(x.requested_at)), el('td', {}, x.requested_by), el('td', {}, x.reference),
        el('td', {}, x.state + (x.error ? ': ' + x.error : '')), action);
    }));
    // A bundle being written: look again shortly.
    if (mine.some((x) => x.state === 'approved')) setTimeout(load, 1000);
  };
  load();
}

// --- redacted copies: detect, decide, edit, request; approve, download ---
// Times are seconds in the page and nanoseconds in the plan (the engine's
// durations); boxes are fractions of the picture.
const NS = 1e9;

function parseBox(text) {
  const v = String(text || '').trim().split(/[\s,]+/).map(Number);
  if (v.length !== 4 || v.some((n) => !Number.isFinite(n))) return null;
  return { X: v[0], Y: v[1], W: v[2], H: v[3] };
}

function boxAt(track, t) {
  const d = track.Detections;
  if (!d.length || t < d[0].At / NS - 0.4 || t > d[d.length - 1].At / NS + 0.4) return null;
  let best = d[0];
  for (const x of d) if (x.At / NS <= t) best = x;
  return best.Box;
}

function setupRedaction() {
  const card = $('#redaction');
  if (!card) return;
  const incident = card.dataset.incident;
  const err = $('.error', card);
  let session = '', tracks = [];
  const edits = [];

  // The review proxy, when this person may watch it, with the tracks and
  // the box being drawn over it.
  const video = $('#player');
  let overlay = null;
  if (video) {
    const wrap = el('div', { class: 'overlay-wrap' });
    video.replaceWith(wrap);
    overlay = el('canvas', { id: 'redact-overlay' });
    wrap.append(video, overlay);
    let drag = null, drawn = null;
    const pos = (ev) => { const r = overlay.getBoundingClientRect(); return [(ev.clientX - r.left) / r.width, (ev.clientY - r.top) / r.height]; };
    $('#draw-box').addEventListener('change', (ev) => overlay.classList.toggle('drawing', ev.target.checked));
    overlay.addEventListener('mousedown', (ev) => { drag = pos(ev); });
    overlay.addEventListener('mousemove', (ev) => {
      if (!drag) return;
      const [x, y] = pos(ev);
      drawn = { X: Math.max(0, Math.min(drag[0], x)), Y: Math.max(0, Math.min(drag[1], y)), W: Math.abs(x - drag[0]), H: Math.abs(y - drag[1]) };
    });
    overlay.addEventListener('mouseup', () => {
      drag = null;
      if (!drawn || drawn.W <= 0 || drawn.H <= 0) return;
      const f = $('#redact-edit');
      const text = [drawn.X, drawn.Y, drawn.W, drawn.H].map((n) => n.toFixed(3)).join(' ');
      f.elements.kind.value = 'box';
      f.elements.start.value = text;
      if (!f.elements.end.value) f.elements.end.value = text;
      f.elements.from.value = video.currentTime.toFixed(1);
      f.elements.to.value = (video.currentTime + 1).toFixed(1);
    });
    const paint = () => {
      const g = overlay.getContext('2d');
      overlay.width = overlay.clientWidth; overlay.height = overlay.clientHeight;
      g.clearRect(0, 0, overlay.width, overlay.height);
      const t = video.currentTime;
      for (const tr of tracks) {
        const b = boxAt(tr, t);
        if (!b) continue;
        const keep = $(`#tracks li[data-track="${tr.ID}"] select`).value === 'keep';
        g.strokeStyle = keep ? '#2a2' : '#e22'; g.lineWidth = 2;
        g.strokeRect(b.X * overlay.width, b.Y * overlay.height, b.W * overlay.width, b.H * overlay.height);
        g.fillStyle = g.strokeStyle; g.fillText(`person ${tr.ID}`, b.X * overlay.width, b.Y * overlay.height - 3);
      }
      if (drawn) { g.strokeStyle = '#fc0'; g.strokeRect(drawn.X * overlay.width, drawn.Y * overlay.height, drawn.W * overlay.width, drawn.H * overlay.height); }
      requestAnimationFrame(paint);
    };
    requestAnimationFrame(paint);
  }

  $('#detect').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const state = $('#detect-state');
    state.hidden = false; state.textContent = 'Looking for faces…';
    showError(err, null);
    let d;
    try { d = await api('POST', `/api/v1/incidents/${encodeURIComponent(incident)}/detect`, formJSON(ev.target)); } catch (e) { state.hidden = true; showError(err, e); return; }
    session = d.session; tracks = d.tracks;
    state.textContent = `${tracks.length} ${tracks.length === 1 ? 'person' : 'people'} found; every face is blurred unless kept.`;
    $('#tracks').replaceChildren(...tracks.map((tr) => el('li', { 'data-track': String(tr.ID) },
      el('img', { src: 'data:image/jpeg;base64,' + tr.Thumb, alt: `person ${tr.ID}`, width: '96' }),
      el('span', {}, `person ${tr.ID}, ${(tr.Detections[0].At / NS).toFixed(1)}–${(tr.Detections[tr.Detections.length - 1].At / NS).toFixed(1)} s `),
      (() => { const s = el('select', { name: 'decision' }, el('option', { value: 'blur' }, 'blur'), el('option', { value: 'keep' }, 'keep (the requester)')); return s; })(),
      el('input', { name: 'reason', placeholder: 'reason', value: 'not the requester' }))));
    for (const li of $$('#tracks li')) {
      li.querySelector('select').addEventListener('change', (e) => {
        li.querySelector('input').value = e.target.value === 'keep' ? 'the requester' : 'not the requester';
      });
    }
  });

  const showEdits = () => {
    $('#edits').replaceChildren(...edits.map((e, i) => {
      const rm = el('button', { type: 'button' }, 'remove');
      rm.onclick = () => { edits.splice(i, 1); showEdits(); };
      return el('li', { 'data-kind': e.Kind }, `${e.Kind} ${(e.From / NS).toFixed(1)}–${(e.To / NS).toFixed(1)} s: ${e.Reason} `, rm);
    }));
  };
  $('#redact-edit').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = formJSON(ev.target);
    const e = { Kind: f.kind, From: Math.round(Number(f.from) * NS), To: Math.round(Number(f.to) * NS), Reason: f.reason.trim() };
    if (!(e.To > e.From)) { showError(err, new Error('the range must end after it starts')); return; }
    if (e.Kind === 'box') {
      e.Start = parseBox(f.start); e.End = parseBox(f.end || f.start);
      if (!e.Start || !e.End) { showError(err, new Error('a box is four numbers: x y w h, fractions of the picture')); return; }
    }
    showError(err, null);
    edits.push(e);
    showEdits();
    ev.target.reset();
  });

  $('#redact-request').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const decisions = tracks.map((tr) => {
      const li = $(`#tracks li[data-track="${tr.ID}"]`);
      return { Kind: 'track', Track: tr.ID, Keep: li.querySelector('select').value === 'keep', Reason: li.querySelector('input').value.trim() };
    });
    const plan = { session, plan: { From: 0, To: 0, Tracks: tracks.map((tr) => ({ ID: tr.ID, Detections: tr.Detections })), Edits: decisions.concat(edits) } };
    try {
      await api('POST', `/api/v1/incidents/${encodeURIComponent(incident)}/redactions`, Object.assign(formJSON(ev.target), { plan }));
      ev.target.reset();
      showError(err, null);
      loadRedactions();
    } catch (e) { showError(err, e); }
  });

  const table = $('#redactions');
  const loadRedactions = async () => {
    let list;
    try { list = await api('GET', '/api/v1/redactions'); } catch (e) { return; }
    const mine = list.filter((x) => x.incident === incident);
    $('tbody', table).replaceChildren(...mine.map((x) => {
      const action = el('td');
      if (x.state === 'requested' && card.dataset.approve === 'true' && x.requested_by !== card.dataset.me) {
        const b = el('button', { type: 'button', class: 'approve' }, 'Approve');
        b.onclick = async () => {
          b.disabled = true;
          try { await api('POST', `/api/v1/redactions/${encodeURIComponent(x.id)}/approve`); } catch (e) { alert(e.message); }
          loadRedactions();
        };
        action.append(b);
      } else if (x.state === 'ready') {
        action.append(el('a', { class: 'download', href: `/api/v1/redactions/${encodeURIComponent(x.id)}/bundle` }, 'Download redacted copy'));
      } else if (x.state === 'requested') {
        action.append('waiting for a second admin');
      } else if (x.state === 'approved') {
        action.append('making the copy…');
      }
      return el('tr', { 'data-redaction': x.id, 'data-state': x.state },
        el('td', {}, timeEl(x.requested_at)), el('td', {}, x.requested_by), el('td', {}, x.reference),
        el('td', {}, x.state + (x.error ? ': ' + x.error : '')), action);
    }));
    if (mine.some((x) => x.state === 'approved' || x.state === 'requested')) setTimeout(loadRedactions, 1000);
  };
  loadRedactions();
}

// --- admin pages ---
function setupAdmin() {
  for (const b of $$('button.camera-action')) {
    b.addEventListener('click', async () => {
      const cam = b.closest('tr').dataset.camera, what = b.dataset.action;
      if (!confirm(`${what === 'revoke' ? 'Revoke' : 'Give a new secret to'} camera ${cam}?`)) return;
      try {
        const out = await api('POST', `/api/v1/cameras/${encodeURIComponent(cam)}/${what}`);
        if (out.secret) {
          const p = $('#new-secret');
          p.textContent = `New secret of ${cam} (shown only now): ${out.secret}`;
          p.hidden = false;
        } else location.reload();
      } catch (e) { showError($('.error'), e); }
    });
  }
  for (const b of $$('button.user-disable')) {
    b.addEventListener('click', async () => {
      const user = b.closest('tr').dataset.user;
      if (!confirm(`Disable ${user}? Their sessions end at once.`)) return;
      try { await api('POST', `/api/v1/users/${encodeURIComponent(user)}/disable`); location.reload(); } catch (e) { showError($('.error'), e); }
    });
  }
}

document.addEventListener('DOMContentLoaded', () => {
  showTimes();
  setupLogin();
  setupLogout();
  const reload = setupIncidents();
  setupFeed(reload);
  setupViewer();
  setupLive();
  setupAPIForms();
  setupExports();
  setupRedaction();
  setupAdmin();
  tick();
  setInterval(tick, 1000);
});
