// Unit tests of causeway.js's protocol logic against a scripted fake edge,
// run in real Chromium by TestClientLibrary (browser_test.go): no cluster,
// so every case can provoke exactly the frame sequence it is about (a
// duplicate, a gap, a dropped connection, a refused token, a silent edge).
//
// run() resolves with [{name, ok, error}]; it never rejects.

import { CausewayClient, CausewayError, backoff } from '/causeway.js';

/** A scripted edge: every WebSocket the client opens is one of its sockets. */
class FakeEdge {
  constructor() {
    this.sockets = [];
    this.refuseConnections = false;
    this.acceptToken = (tok) => tok !== 'bad';
    this.answerProbes = false;
    this.welcomes = 0;
    const edge = this;
    this.WebSocket = class FakeWS {
      constructor(url, protocol) {
        this.url = url;
        this.protocol = protocol;
        this.readyState = 0;
        this.sent = [];
        this.seen = 0; // frames already taken by next()
        this.closedByClient = null;
        edge.sockets.push(this);
        setTimeout(() => {
          if (edge.refuseConnections) {
            this.drop(1006);
            return;
          }
          this.readyState = 1;
          if (this.onopen) this.onopen();
        }, 0);
      }
      send(data) {
        if (this.readyState !== 1) throw new Error('send on a socket that is not open');
        for (const line of data.split('\n')) {
          const f = JSON.parse(line);
          this.sent.push(f);
          edge.handle(this, f);
        }
      }
      close(code, reason) {
        this.closedByClient = { code, reason };
        this.readyState = 3;
      }
      push(...frames) {
        if (this.onmessage) this.onmessage({ data: frames.map((f) => JSON.stringify(f)).join('\n') });
      }
      drop(code = 1006, reason = '') {
        this.readyState = 3;
        if (this.onclose) this.onclose({ code, reason });
      }
    };
  }

  get last() {
    return this.sockets[this.sockets.length - 1];
  }

  /** The edge's own answers: hello (welcome or refusal) and pings. */
  handle(ws, f) {
    if (f.type === 'ping') {
      if (this.answerProbes) {
        setTimeout(() => ws.push({ type: 'ack', id: f.id }), 0);
      }
      return;
    }
    if (f.type !== 'hello') return;
    setTimeout(() => {
      if (!this.acceptToken(f.token)) {
        ws.push({ type: 'error', id: f.id, code: 'unauthorized', message: 'invalid token' });
        ws.drop(4401, 'invalid token');
        return;
      }
      this.welcomes++;
      ws.push({ type: 'welcome', id: f.id, user: 'alice', session: `s${this.welcomes}`, edge: 'edge-x' });
    }, 0);
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what, pred, ms = 2000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = pred();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

/** The next frame of type the client sent on ws, not taken before. */
async function next(ws, type) {
  return waitFor(`a ${type} frame`, () => {
    for (let i = ws.seen; i < ws.sent.length; i++) {
      if (ws.sent[i].type === type) {
        ws.seen = i + 1;
        return ws.sent[i];
      }
    }
    return null;
  });
}

function eq(got, want, what) {
  const g = JSON.stringify(got);
  const w = JSON.stringify(want);
  if (g !== w) throw new Error(`${what}: got ${g}, want ${w}`);
}

function ok(cond, what) {
  if (!cond) throw new Error(what);
}

async function rejects(p, code, what) {
  try {
    await p;
  } catch (err) {
    ok(err instanceof CausewayError, `${what}: rejected with ${err}, want a CausewayError`);
    eq(err.code, code, `${what}: error code`);
    return err;
  }
  throw new Error(`${what}: resolved, want a rejection with ${code}`);
}

async function connected(opts = {}) {
  const edge = new FakeEdge();
  const client = new CausewayClient({
    urls: ['ws://edge-a/v1/ws'],
    token: 'T1',
    WebSocket: edge.WebSocket,
    minBackoffMs: 1,
    maxBackoffMs: 20,
    ...opts,
  });
  const seen = [];
  for (const t of ['msg', 'member', 'signal', 'subscribed', 'error', 'presence']) {
    client.on(t, (f) => seen.push(f));
  }
  await client.connect();
  return { edge, client, seen, ws: edge.last };
}

/** Subscribe g from since and answer: subscribed at seq, events 1..seq, ack. */
async function subscribed(client, ws, group, seq) {
  const p = client.subscribe(group, { since: 0 });
  const sub = await next(ws, 'subscribe');
  eq(sub.since, 0, 'first subscribe with since 0');
  ws.push({ type: 'subscribed', id: sub.id, group, seq, read_seq: 0, recovered: true });
  for (let s = 1; s <= seq; s++) ws.push(msg(group, s));
  ws.push({ type: 'ack', id: sub.id });
  return p;
}

function msg(group, seq, from = 'bob') {
  return { type: 'msg', group, seq, from, client_msg_id: `c${seq}`, ts: 1, body: { n: seq } };
}

const seqs = (seen, group) => seen.filter((f) => f.type === 'msg' && f.group === group).map((f) => f.seq);

const cases = {
  async 'hello with the token, then request ids answered by ack and error'() {
    const { client, ws } = await connected();
    eq(ws.protocol, 'causeway.v1', 'subprotocol');
    eq(ws.sent[0].type, 'hello', 'first frame');
    eq(ws.sent[0].token, 'T1', 'hello token');
    eq([client.user, client.session, client.edge, client.state], ['alice', 's1', 'edge-x', 'open'], 'welcome');
    const p = client.join('g');
    const j = await next(ws, 'join');
    ok(typeof j.id === 'string' && j.id !== '', 'join carries an id');
    ws.push({ type: 'ack', id: j.id, group: 'g', seq: 7 });
    eq((await p).seq, 7, 'join resolves with its ack');
    const p2 = client.join('h');
    const j2 = await next(ws, 'join');
    ok(j2.id !== j.id, 'each request has its own id');
    ws.push({ type: 'error', id: j2.id, code: 'forbidden', message: 'no' });
    await rejects(p2, 'forbidden', 'join refused');
    client.close();
    await rejects(client.join('g'), 'closed', 'a request after close');
  },

  async 'duplicates dropped; a gap resubscribes with since and is filled in order'() {
    const { client, ws, seen } = await connected();
    const sub = await subscribed(client, ws, 'g', 2);
    eq(sub.type, 'subscribed', 'subscribe resolves with the subscribed frame');
    ws.push(msg('g', 2), msg('g', 4)); // a duplicate, then a gap (3 missing)
    const again = await next(ws, 'subscribe');
    eq(again.since, 2, 'resubscribe from the last delivered seq');
    ws.push(msg('g', 5)); // beyond the gap while the resubscribe is out: held back
    ws.push({ type: 'subscribed', id: again.id, group: 'g', seq: 5, read_seq: 0, recovered: true });
    ws.push(msg('g', 3), msg('g', 4), msg('g', 5), { type: 'ack', id: again.id });
    ws.push(msg('g', 6));
    await waitFor('seq 6', () => seqs(seen, 'g').includes(6));
    eq(seqs(seen, 'g'), [1, 2, 3, 4, 5, 6], 'delivered seqs');
    ok(client.stats.duplicatesDropped >= 1, 'duplicates counted');
    eq([client.stats.gapsDetected, client.stats.gapsRecovered], [1, 1], 'gaps detected, recovered');
    eq(client.positions().get('g'), 6, 'position');
    client.close();
  },

  async 'recovered:false is reported and the timeline rebases'() {
    const { client, ws, seen } = await connected();
    await subscribed(client, ws, 'g', 1);
    ws.push(msg('g', 9)); // gap
    const again = await next(ws, 'subscribe');
    ws.push({ type: 'subscribed', id: again.id, group: 'g', seq: 9, read_seq: 0, recovered: false });
    ws.push(msg('g', 8), msg('g', 9), { type: 'ack', id: again.id });
    await waitFor('seq 9', () => seqs(seen, 'g').includes(9));
    eq(seqs(seen, 'g'), [1, 8, 9], 'what remained is delivered in order');
    ok(seen.some((f) => f.type === 'subscribed' && f.recovered === false), 'the app hears of the loss');
    eq(client.stats.gapsUnrecoverable, 1, 'gapsUnrecoverable');
    client.close();
  },

  async 'reconnect: next edge, resubscribe with since, send retried with the same client_msg_id'() {
    const { client, ws, edge, seen } = await connected({ urls: ['ws://edge-a/v1/ws', 'ws://edge-b/v1/ws'] });
    await subscribed(client, ws, 'g', 3);
    const reconnecting = [];
    client.on('reconnecting', (r) => reconnecting.push(r));
    const p = client.send('g', { text: 'hi' }, { clientMsgId: 'm-1' });
    const s1 = await next(ws, 'send');
    eq(s1.client_msg_id, 'm-1', 'client_msg_id');
    ws.drop(1006); // lost before the ack
    await waitFor('a second connection', () => edge.sockets.length === 2 && client.state === 'open');
    const ws2 = edge.last;
    ok(ws2.url !== ws.url, `moved to the other edge (${ws.url} -> ${ws2.url})`);
    eq(reconnecting.length, 1, 'one reconnecting event');
    const sub = await next(ws2, 'subscribe');
    eq([sub.group, sub.since], ['g', 3], 'resubscribe from the last seq');
    const s2 = await next(ws2, 'send');
    eq(s2.client_msg_id, 'm-1', 'the retried send keeps its client_msg_id');
    ok(s2.id !== s1.id, 'a new request id');
    ws2.push({ type: 'subscribed', id: sub.id, group: 'g', seq: 4, read_seq: 0, recovered: true });
    ws2.push(msg('g', 3), msg('g', 4), { type: 'ack', id: sub.id }); // 3 again: dropped
    ws2.push({ type: 'ack', id: s2.id, group: 'g', seq: 4 });
    eq((await p).seq, 4, 'send resolves with the seq');
    await waitFor('seq 4', () => seqs(seen, 'g').includes(4));
    eq(seqs(seen, 'g'), [1, 2, 3, 4], 'no duplicate across the reconnect');
    eq([client.stats.reconnects, client.stats.sendRetries >= 1], [1, true], 'stats');
    client.close();
  },

  async 'unavailable is retried with the same frame; a written signal fails on a lost connection'() {
    const { client, ws } = await connected();
    const p = client.send('g', 1, { clientMsgId: 'm-2' });
    const a = await next(ws, 'send');
    ws.push({ type: 'error', id: a.id, code: 'unavailable', message: 'retry' });
    const b = await next(ws, 'send');
    eq(b.client_msg_id, 'm-2', 'same client_msg_id after unavailable');
    ws.push({ type: 'ack', id: b.id, group: 'g', seq: 1 });
    eq((await p).seq, 1, 'resolves after the retry');
    const sig = client.signal('bob', 'call-1', 'offer', { sdp: 'x' }, { toSession: 'sB' });
    const f = await next(ws, 'signal');
    eq([f.to, f.call, f.kind, f.to_session, f.payload.sdp], ['bob', 'call-1', 'offer', 'sB', 'x'], 'signal frame');
    ws.drop(1006);
    await rejects(sig, 'disconnected', 'a signal whose connection died');
    client.close();
  },

  async 'signals: a call_seq already seen is dropped'() {
    const { client, ws, seen } = await connected();
    const sig = (n, session = 'sB') => ({
      type: 'signal', from: 'bob', from_session: session, call: 'c1', call_seq: n, kind: 'ice', payload: { n },
    });
    ws.push(sig(1), sig(2), sig(2), sig(1), sig(3), sig(1, 'sB2'));
    const got = seen.filter((f) => f.type === 'signal').map((f) => `${f.from_session}:${f.call_seq}`);
    eq(got, ['sB:1', 'sB:2', 'sB:3', 'sB2:1'], 'delivered signals');
    eq(client.stats.duplicateSignals, 2, 'duplicate signals counted');
    client.close();
  },

  async 'presence is asked again on a new connection; typing is throttled; read only moves forward'() {
    const { client, ws, edge } = await connected({ typingIntervalMs: 10000 });
    const p = client.presence(['bob', 'carol']);
    const f = await next(ws, 'presence');
    eq(f.users, ['bob', 'carol'], 'presence users');
    ws.push({ type: 'ack', id: f.id });
    await p;
    ok(client.typing('g') === true, 'first typing sent');
    ok(client.typing('g') === false, 'second typing within the interval not sent');
    eq(ws.sent.filter((x) => x.type === 'typing').length, 1, 'typing frames');
    ok(!('id' in ws.sent.find((x) => x.type === 'typing')), 'typing is fire and forget');
    const r = client.read('g', 5);
    const rf = await next(ws, 'read');
    eq([rf.group, rf.seq], ['g', 5], 'read frame');
    ws.push({ type: 'ack', id: rf.id });
    await r;
    eq(await client.read('g', 4), null, 'an older read is not sent');
    ws.drop(1006);
    await waitFor('reconnected', () => edge.sockets.length === 2 && client.state === 'open');
    const again = await next(edge.last, 'presence');
    eq(again.users, ['bob', 'carol'], 'presence asked again after the reconnect');
    client.close();
  },

  async 'a silent connection is probed, and replaced when the probe gets no answer'() {
    const { client, edge, ws } = await connected({ idleProbeMs: 80, probeTimeoutMs: 80 });
    await next(ws, 'hello'); // the handshake's
    const probe = await next(ws, 'ping');
    ok(probe.id.startsWith('probe-'), `probe id ${probe.id}`);
    await waitFor('a new connection', () => edge.sockets.length === 2 && client.state === 'open', 3000);
    ok(ws.closedByClient !== null, 'the dead socket was closed by the client');
    const again = edge.sockets[1].sent.find((f) => f.type === 'hello');
    eq(again.resume, 's1', 'the new hello resumes the old session');
    edge.answerProbes = true;
    const before = client.stats.probes;
    await sleep(500);
    ok(client.stats.probes > before, 'probes keep going while idle');
    eq(edge.sockets.length, 2, 'answered probes keep the connection');
    client.close();
  },

  async 'a refused token is fetched again once, then the client ends'() {
    const edge = new FakeEdge();
    const calls = [];
    const client = new CausewayClient({
      urls: ['ws://edge-a/v1/ws'],
      WebSocket: edge.WebSocket,
      minBackoffMs: 1,
      maxBackoffMs: 20,
      token: ({ refresh }) => {
        calls.push(refresh);
        return 'bad';
      },
    });
    await rejects(client.connect(), 'unauthorized', 'connect with a bad token');
    eq(calls, [false, true], 'token fetched, then refreshed once');
    eq(client.state, 'closed', 'state');
  },

  async 'a token refreshed after a refusal is used'() {
    const edge = new FakeEdge();
    let n = 0;
    const client = new CausewayClient({
      urls: ['ws://edge-a/v1/ws'],
      WebSocket: edge.WebSocket,
      token: ({ refresh }) => (refresh ? `good-${++n}` : 'bad'),
    });
    await client.connect();
    eq(edge.last.sent[0].token, 'good-1', 'the refreshed token');
    client.close();
  },

  async 'close 4400 ends the client; unreachable edges are retried with backoff'() {
    const edge = new FakeEdge();
    edge.refuseConnections = true;
    const client = new CausewayClient({ urls: ['ws://a/v1/ws'], token: 't', WebSocket: edge.WebSocket, minBackoffMs: 1, maxBackoffMs: 8 });
    const p = client.connect();
    await waitFor('three attempts', () => edge.sockets.length >= 3);
    edge.refuseConnections = false;
    await p;
    edge.last.drop(4400, 'too many bad frames');
    eq(client.state, 'closed', 'fatal close code ends the client');
    ok(client.error instanceof CausewayError, 'error kept');
  },

  async 'suspend keeps subscriptions and queues requests; resume catches up'() {
    const { client, ws, edge, seen } = await connected();
    await subscribed(client, ws, 'g', 2);
    client.suspend();
    eq(client.state, 'suspended', 'state');
    const p = client.send('g', 'while away', { clientMsgId: 'm-away' });
    await sleep(30);
    eq(edge.sockets.length, 1, 'no reconnect while suspended');
    client.resume();
    await waitFor('resumed', () => client.state === 'open');
    const ws2 = edge.last;
    const sub = await next(ws2, 'subscribe');
    eq(sub.since, 2, 'resume from the last seq');
    const s = await next(ws2, 'send');
    eq(s.client_msg_id, 'm-away', 'the queued send goes out');
    ws2.push({ type: 'subscribed', id: sub.id, group: 'g', seq: 3, read_seq: 0, recovered: true }, msg('g', 3));
    ws2.push({ type: 'ack', id: sub.id }, { type: 'ack', id: s.id, group: 'g', seq: 3 });
    eq((await p).seq, 3, 'queued send acked');
    eq(seqs(seen, 'g'), [1, 2, 3], 'caught up');
    client.close();
  },

  async 'backoff is full jitter within its bounds'() {
    eq(backoff(100, 5000, 0, 0), 0, 'r=0');
    ok(backoff(100, 5000, 0, 0.999) < 100, 'attempt 0 below min');
    ok(backoff(100, 5000, 3, 0.999) < 800, 'attempt 3 below min*8');
    ok(backoff(100, 5000, 40, 0.999) < 5000, 'capped at max');
    ok(backoff(100, 5000, 40, 0.999) >= 4990, 'reaches max');
  },
};

export async function run() {
  const results = [];
  for (const [name, fn] of Object.entries(cases)) {
    try {
      await Promise.race([
        fn(),
        sleep(10000).then(() => {
          throw new Error('case timed out after 10 s');
        }),
      ]);
      results.push({ name, ok: true, error: '' });
    } catch (err) {
      results.push({ name, ok: false, error: String(err && err.stack ? err.stack : err) });
    }
  }
  return results;
}
