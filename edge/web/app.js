// The Causeway demo page: group chat with members, presence, typing and
// read receipts, and a 1:1 WebRTC call signaled through Causeway.
//
// Query parameters (all optional):
//   user, group   prefill the sign-in form
//   token         a token to sign in with (else /dev/token, in dev)
//   edges         comma-separated WebSocket URLs to use and fail over
//                 between (default: this edge's own /v1/ws); other edges
//                 accept the page only if their edge.allowed_origins
//                 allows this page's origin
//   ice           STUN/TURN servers: comma-separated URLs
//                 (stun:host:3478,...) or a JSON array of RTCIceServer
//                 ([{"urls":"turn:h:3478","username":"u","credential":"c"}]);
//                 default none, which is all a call on one machine or LAN
//                 needs
//
// window.demo exposes the page's state, for the browser tests and for
// poking at from the console.

import { CausewayClient, CausewayError, randomId } from '/causeway.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

/** Everything the page knows; one object, so tests can read it. */
const demo = {
  client: null,
  user: '',
  group: '',
  ready: false, // joined, subscribed and history replayed
  /** Confirmed messages in seq order: {seq, from, text, clientMsgId}. */
  messages: [],
  members: new Set(),
  presence: new Map(), // user -> 'online' | 'offline'
  typing: [],
  reads: new Map(), // seq -> how many members have read it
  call: null,
  iceServers: parseIce(params.get('ice')),
  errors: [], // unsolicited error frames, newest last
};
window.demo = demo;

function parseIce(s) {
  if (!s) return [];
  s = s.trim();
  if (s.startsWith('[')) {
    try {
      return JSON.parse(s);
    } catch (err) {
      // A typo in the URL must not break the page: chat still works,
      // and a call on one machine or LAN needs no server.
      console.warn('ignoring ?ice=: not a JSON array of RTCIceServer:', err.message);
      return [];
    }
  }
  return s.split(',').map((u) => u.trim()).filter(Boolean).map((urls) => ({ urls }));
}

function edgeURLs() {
  const list = (params.get('edges') || '').split(',').map((u) => u.trim()).filter(Boolean);
  if (list.length > 0) return list;
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return [`${scheme}//${location.host}/v1/ws`];
}

// ---- sign in ---------------------------------------------------------------

async function init() {
  $('user').value = params.get('user') || '';
  if (params.get('group')) $('group').value = params.get('group');
  if (params.get('token')) $('token').value = params.get('token');
  // Does this edge mint dev tokens? 404 means no: ask for a token.
  try {
    const r = await fetch('/dev/token', { method: 'HEAD', cache: 'no-store' });
    if (r.status === 404) $('token-label').hidden = false;
  } catch {
    $('token-label').hidden = false;
  }
  $('signin').addEventListener('submit', (e) => {
    e.preventDefault();
    signIn().catch((err) => {
      $('signin-error').textContent = String(err.message || err);
      $('signin-btn').disabled = false;
    });
  });
  $('compose').addEventListener('submit', (e) => {
    e.preventDefault();
    sendText();
  });
  $('text').addEventListener('input', () => {
    if (demo.client && $('text').value !== '') demo.client.typing(demo.group);
  });
  $('accept').addEventListener('click', () => acceptCall().catch(callFailed));
  $('decline').addEventListener('click', () => endCall('declined', true));
  $('hangup').addEventListener('click', () => endCall('hung up', true));
  document.addEventListener('visibilitychange', markRead);
}

async function signIn() {
  $('signin-btn').disabled = true;
  $('signin-error').textContent = '';
  const user = $('user').value.trim();
  const group = $('group').value.trim();
  const pasted = $('token').value.trim();
  let cached = pasted;
  const token = async ({ refresh }) => {
    if (cached && !refresh) return cached;
    if (pasted) throw new CausewayError('unauthorized', 'the token was refused: paste a new one');
    const r = await fetch(`/dev/token?user=${encodeURIComponent(user)}`, { cache: 'no-store' });
    if (r.status === 404) throw new CausewayError('unauthorized', 'this edge issues no dev tokens: paste a token');
    if (!r.ok) throw new CausewayError('unauthorized', (await r.text()).trim());
    cached = (await r.json()).token;
    return cached;
  };
  const client = new CausewayClient({ urls: edgeURLs(), token });
  demo.client = client;
  demo.user = user;
  demo.group = group;
  wire(client);
  await client.connect();
  await client.join(group);
  $('signin').hidden = true;
  $('app').hidden = false;
  $('group-title').textContent = group;
  addMember(user);
  // since: 0 replays the group's kept history (messages and members).
  await client.subscribe(group, { since: 0 });
  demo.ready = true;
  markRead();
}

function wire(client) {
  client.on('open', (w) => setStatus('open', `${w.user} on ${w.edge}${w.reconnect ? ' (reconnected)' : ''}`));
  client.on('reconnecting', (r) => setStatus('connecting', `reconnecting in ${r.delayMs} ms (${r.code} ${r.reason})`));
  client.on('closed', ({ error }) => setStatus('closed', error ? `disconnected: ${error.message}` : 'signed out'));
  client.on('msg', onMsg);
  client.on('member', onMember);
  client.on('subscribed', (f) => systemLine(`some messages before #${f.seq} are no longer available`));
  client.on('presence', onPresence);
  client.on('typing', onTyping);
  client.on('receipts', onReceipts);
  client.on('signal', (f) => onSignal(f).catch(callFailed));
  client.on('error', (f) => {
    demo.errors.push(f);
    console.warn('causeway error', f);
  });
}

/** A handler for a request whose failure the page can live with. */
function noted(request) {
  return (err) => {
    demo.errors.push({ type: 'error', request, code: err.code, message: err.message });
    console.info(request, err.message);
  };
}

function setStatus(state, text) {
  $('status').dataset.state = state;
  $('status').textContent = text;
}

// ---- chat --------------------------------------------------------------------

function bodyText(body) {
  if (body && typeof body === 'object' && typeof body.text === 'string') return body.text;
  return JSON.stringify(body);
}

function sendText() {
  const text = $('text').value.trim();
  if (!text || !demo.client) return;
  $('text').value = '';
  const clientMsgId = randomId('m');
  // Shown at once, greyed, until it comes back sequenced.
  const li = document.createElement('li');
  li.className = 'pending';
  li.dataset.clientMsgId = clientMsgId;
  li.append(span('from', demo.user), span('text', text));
  $('messages').append(li);
  scrollDown();
  demo.client.send(demo.group, { text }, { clientMsgId }).catch((err) => {
    li.classList.add('failed');
    li.append(span('receipt', `not sent: ${err.message}`));
  });
}

function span(cls, text) {
  const s = document.createElement('span');
  s.className = cls;
  s.textContent = text;
  return s;
}

function onMsg(f) {
  if (f.group !== demo.group) return;
  const text = bodyText(f.body);
  demo.messages.push({ seq: f.seq, from: f.from, text, clientMsgId: f.client_msg_id });
  addMember(f.from);
  const li = document.createElement('li');
  li.dataset.seq = String(f.seq);
  li.title = `#${f.seq} at ${new Date(f.ts).toLocaleTimeString()}`;
  li.append(span('from', f.from), span('text', text), span('receipt', receiptText(f.seq)));
  // Confirmed messages stay in seq order, above the pending ones.
  const pending = document.querySelector(`#messages li.pending[data-client-msg-id="${CSS.escape(f.client_msg_id)}"]`);
  if (pending) pending.remove();
  const firstPending = document.querySelector('#messages li.pending');
  $('messages').insertBefore(li, firstPending);
  scrollDown();
  markRead();
}

function onMember(f) {
  if (f.group !== demo.group) return;
  if (f.event === 'joined') {
    addMember(f.user);
    systemLine(`${f.user} joined`);
  } else {
    demo.members.delete(f.user);
    document.querySelector(`#members li[data-user="${CSS.escape(f.user)}"]`)?.remove();
    systemLine(`${f.user} left`);
  }
}

function systemLine(text) {
  const li = document.createElement('li');
  li.className = 'system';
  li.textContent = text;
  $('messages').insertBefore(li, document.querySelector('#messages li.pending'));
}

function scrollDown() {
  const m = $('messages');
  m.scrollTop = m.scrollHeight;
}

// Read receipts: tell the group how far we have read, while visible.
let readTimer = null;
function markRead() {
  if (!demo.ready || document.visibilityState !== 'visible' || readTimer) return;
  readTimer = setTimeout(() => {
    readTimer = null;
    const last = demo.messages.at(-1);
    if (last) demo.client.read(demo.group, last.seq).catch(noted('read'));
  }, 300);
}

function receiptText(seq) {
  const n = demo.reads.get(seq);
  return n ? `read by ${n}` : '';
}

function onReceipts(f) {
  if (f.group !== demo.group) return;
  for (const { seq, count } of f.reads) {
    demo.reads.set(seq, count);
    const el = document.querySelector(`#messages li[data-seq="${seq}"] .receipt`);
    if (el) el.textContent = receiptText(seq);
  }
}

let typingClear = null;
function onTyping(f) {
  if (f.group !== demo.group) return;
  demo.typing = (f.users || []).filter((u) => u !== demo.user);
  const n = demo.typing.length;
  $('typing').textContent = n === 0 ? '' : `${demo.typing.join(', ')} ${n === 1 ? 'is' : 'are'} typing…`;
  // The edge sends the list again while people type; a stale one fades.
  clearTimeout(typingClear);
  if (n > 0) typingClear = setTimeout(() => onTyping({ group: f.group, users: [] }), 6000);
}

// ---- members and presence ---------------------------------------------------

let presenceAsk = new Set();
function addMember(user) {
  if (demo.members.has(user)) return;
  demo.members.add(user);
  const li = document.createElement('li');
  li.dataset.user = user;
  const dot = span('dot unknown', '');
  dot.title = 'presence unknown';
  li.append(dot, span('name', user === demo.user ? `${user} (you)` : user));
  if (user !== demo.user) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'call-btn';
    b.textContent = 'Call';
    b.addEventListener('click', () => startCall(user).catch(callFailed));
    li.append(b);
    // Ask in one request for every member found in this turn.
    if (presenceAsk.size === 0) {
      queueMicrotask(() => {
        const users = [...presenceAsk];
        presenceAsk = new Set();
        demo.client.presence(users).catch(noted('presence'));
      });
    }
    presenceAsk.add(user);
  }
  $('members').append(li);
  if (user === demo.user) setDot(user, 'online');
}

function onPresence(f) {
  demo.presence.set(f.user, f.status);
  setDot(f.user, f.status);
}

function setDot(user, status) {
  const dot = document.querySelector(`#members li[data-user="${CSS.escape(user)}"] .dot`);
  if (!dot) return;
  dot.className = `dot ${status === 'online' ? 'online' : 'offline'}`;
  dot.title = status;
  dot.parentElement.dataset.presence = status;
}

// ---- calls ------------------------------------------------------------------
//
// Caller: offer -> (ice...) ; callee: answer -> (ice...) ; either: bye.
// The caller sends `cancel` to stop the ringing; the callee's other
// sessions get `answered_elsewhere` from Causeway when one answers. The
// caller's signals go to all the callee's sessions until the answer names
// one (from_session), then only to it.

function showCall(peer, status) {
  $('call').hidden = false;
  $('call-peer').textContent = peer ? `with ${peer}` : '';
  setCallStatus(status);
}

function setCallStatus(s) {
  $('call-status').textContent = s;
  if (demo.call) demo.call.status = s;
}

function callFailed(err) {
  console.error('call', err);
  setCallStatus(`call failed: ${err.message || err}`);
}

async function getMedia() {
  // Video and audio if there are devices; less if not; a call without
  // local media still receives.
  for (const c of [{ audio: true, video: true }, { audio: true }, { video: true }]) {
    try {
      return await navigator.mediaDevices.getUserMedia(c);
    } catch (err) {
      console.info('getUserMedia', c, err.name);
    }
  }
  return null;
}

function newPeerConnection(call) {
  const pc = new RTCPeerConnection({ iceServers: demo.iceServers });
  pc.onicecandidate = (e) => {
    if (!e.candidate) return; // end of candidates needs no signal
    demo.client
      .signal(call.peer, call.id, 'ice', e.candidate.toJSON(), { toSession: call.peerSession })
      .catch(noted('signal ice'));
  };
  pc.onconnectionstatechange = () => {
    call.connectionState = pc.connectionState;
    if (pc.connectionState === 'connected') setCallStatus('connected');
    if (pc.connectionState === 'failed') setCallStatus('connection failed');
  };
  pc.ontrack = (e) => {
    const v = $('remote');
    if (!v.srcObject) v.srcObject = e.streams[0] || new MediaStream();
    if (!e.streams[0]) v.srcObject.addTrack(e.track);
    v.play().catch(() => {
      // Autoplay with sound refused: play muted rather than not at all.
      v.muted = true;
      v.play().catch(() => {});
    });
    countFrames(call, v);
  };
  return pc;
}

function countFrames(call, v) {
  if (call.counting || !('requestVideoFrameCallback' in v)) return;
  call.counting = true;
  const tick = () => {
    if (demo.call !== call) return;
    call.remoteFrames++;
    v.requestVideoFrameCallback(tick);
  };
  v.requestVideoFrameCallback(tick);
}

function addLocal(call, pc, stream) {
  call.local = stream;
  if (stream) {
    for (const t of stream.getTracks()) pc.addTrack(t, stream);
    $('local').srcObject = stream;
  }
  const kinds = new Set(stream ? stream.getTracks().map((t) => t.kind) : []);
  for (const kind of ['audio', 'video']) {
    if (!kinds.has(kind)) pc.addTransceiver(kind, { direction: 'recvonly' });
  }
}

function newCall(id, peer, role) {
  return {
    id, peer, role,
    peerSession: undefined,
    pc: null,
    local: null,
    offer: null,
    pendingIce: [],
    status: '',
    connectionState: 'new',
    remoteFrames: 0,
    offerSent: false,
    counting: false,
    ringTimer: null,
    chain: Promise.resolve(), // signals of one call are handled one at a time
  };
}

async function startCall(peer) {
  if (demo.call) return;
  const call = newCall(randomId('c'), peer, 'caller');
  demo.call = call;
  showCall(peer, `calling ${peer}…`);
  const pc = newPeerConnection(call);
  call.pc = pc;
  addLocal(call, pc, await getMedia());
  await pc.setLocalDescription(await pc.createOffer());
  try {
    await demo.client.signal(peer, call.id, 'offer', { type: 'offer', sdp: pc.localDescription.sdp });
    call.offerSent = true; // the edge took it: the callee's sessions ring
  } catch (err) {
    noted('signal offer')(err);
    endCall(err.code === 'unavailable' ? `${peer} is offline` : `could not call: ${err.message}`, false);
    return;
  }
  call.ringTimer = setTimeout(() => {
    if (demo.call === call && call.connectionState === 'new' && !call.peerSession) {
      demo.client.signal(peer, call.id, 'cancel', null).catch(() => {});
      endCall('no answer', false);
    }
  }, 45000);
}

async function acceptCall() {
  const call = demo.call;
  if (!call || call.role !== 'callee' || call.pc) return;
  $('incoming').hidden = true;
  setCallStatus('connecting…');
  const pc = newPeerConnection(call);
  call.pc = pc;
  addLocal(call, pc, await getMedia());
  await pc.setRemoteDescription(call.offer);
  await pc.setLocalDescription(await pc.createAnswer());
  await demo.client.signal(call.peer, call.id, 'answer', { type: 'answer', sdp: pc.localDescription.sdp },
    { toSession: call.peerSession });
  await flushIce(call);
}

async function flushIce(call) {
  const queued = call.pendingIce.splice(0);
  for (const c of queued) await call.pc.addIceCandidate(c);
}

/** End the current call; tell the peer when we are the one ending it. */
function endCall(why, tell) {
  const call = demo.call;
  if (!call) return;
  if (tell) {
    const kind = call.role === 'caller' && !call.peerSession ? 'cancel' : 'bye';
    demo.client.signal(call.peer, call.id, kind, { reason: why }, { toSession: call.peerSession })
      .catch(() => {});
  }
  clearTimeout(call.ringTimer);
  if (call.pc) call.pc.close();
  if (call.local) for (const t of call.local.getTracks()) t.stop();
  $('remote').srcObject = null;
  $('local').srcObject = null;
  $('incoming').hidden = true;
  demo.call = null;
  demo.lastCall = { id: call.id, peer: call.peer, ended: why };
  setCallStatus(`call ended: ${why}`);
}

async function onSignal(f) {
  const call = demo.call;
  if (f.kind === 'offer') {
    if (call && call.id !== f.call) {
      // Busy: one call at a time.
      await demo.client.signal(f.from, f.call, 'bye', { reason: 'busy' }, { toSession: f.from_session });
      return;
    }
    if (call) return; // the same offer again
    const c = newCall(f.call, f.from, 'callee');
    c.peerSession = f.from_session;
    c.offer = f.payload;
    demo.call = c;
    showCall(f.from, `${f.from} is calling`);
    $('incoming-text').textContent = `${f.from} is calling you`;
    $('incoming').hidden = false;
    return;
  }
  if (!call || call.id !== f.call) return; // a call we are not in
  call.chain = call.chain.then(() => handleCallSignal(call, f));
  await call.chain;
}

async function handleCallSignal(call, f) {
  if (demo.call !== call) return;
  switch (f.kind) {
    case 'answer':
      if (call.role !== 'caller' || !call.pc || call.pc.remoteDescription) return;
      call.peerSession = f.from_session; // from now on, only that session
      clearTimeout(call.ringTimer);
      setCallStatus('connecting…');
      await call.pc.setRemoteDescription(f.payload);
      await flushIce(call);
      return;
    case 'ice':
      if (call.pc && call.pc.remoteDescription) await call.pc.addIceCandidate(f.payload);
      else call.pendingIce.push(f.payload);
      return;
    case 'cancel':
      if (call.role === 'callee' && !call.pc) endCall(`${call.peer} cancelled`, false);
      return;
    case 'answered_elsewhere':
      if (call.role === 'callee' && !call.pc) endCall('answered on another device', false);
      return;
    case 'bye':
      endCall(`${call.peer} ${f.payload && f.payload.reason ? f.payload.reason : 'hung up'}`, false);
  }
}

init();
