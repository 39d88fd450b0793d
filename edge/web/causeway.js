// causeway.js: a browser (and Node) client for the Causeway protocol,
// docs/PROTOCOL.md (subprotocol causeway.v1). An ES module with JSDoc
// types; causeway.d.ts beside it declares the same API for TypeScript.
// No build step: `import { CausewayClient } from '/causeway.js'`.
//
// What it does for the application, mirroring the Go client
// (edge/client Session):
//   - hello handshake with a token (a string or a function, called before
//     every connection so an expiring token can be refreshed);
//   - request ids and promises: every request resolves with its `ack`
//     (or `subscribed`) and rejects with its `error` as a CausewayError;
//   - reconnects by itself across a list of edge URLs (shuffled, then
//     round-robin) with full-jitter exponential backoff;
//   - on every new connection, subscribes each group again with
//     `since` = the last seq it delivered (a few at a time, because an
//     edge closes a client whose queue of replays overflows: 4409);
//   - delivers each group's timeline (`msg`, `member`) once, in seq order:
//     drops seqs already seen, and on a jump subscribes again with
//     `since` to fill the gap;
//   - retries `send` with the same `client_msg_id` after a reconnect or an
//     `unavailable` answer, so a message is sequenced once;
//   - notices a dead connection that the browser does not report (no
//     frame for a while, and no answer to a probe) and reconnects;
//   - signaling helpers: `signal` to a user or session, drops relayed
//     signals whose per-call `call_seq` it has already seen; `presence`
//     (asked again after a reconnect), `typing` (throttled), `read`
//     (only forward).
//
// Everything runs on the caller's event loop: no locks, no workers.

/** The WebSocket subprotocol of PROTOCOL.md v1. */
export const SUBPROTOCOL = 'causeway.v1';

/** Error codes that are worth retrying with the same frame. */
const RETRYABLE = new Set(['unavailable', 'rate_limited']);

/**
 * Close codes after which reconnecting cannot help: the client itself is
 * at fault (PROTOCOL.md, close codes).
 */
const FATAL_CLOSE = new Set([1002, 1009, 4400]);

const CLOSE_UNAUTHORIZED = 4401;
const CLOSE_POLICY = 4408;

/**
 * A request answered with an `error` frame, or failed locally (codes
 * `timeout`, `disconnected`, `closed`).
 */
export class CausewayError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {object} [frame] the error frame, when the edge sent one
   */
  constructor(code, message, frame) {
    super(`${code}: ${message}`);
    this.name = 'CausewayError';
    /** @type {string} */
    this.code = code;
    /** @type {object|undefined} */
    this.frame = frame;
  }
}

/**
 * Full-jitter backoff: uniform in [0, min(maxMs, minMs * 2^attempt)), so
 * clients cut off together do not come back together.
 * @param {number} minMs
 * @param {number} maxMs
 * @param {number} attempt 0-based
 * @param {number} [r] a draw in [0, 1), for tests
 * @returns {number}
 */
export function backoff(minMs, maxMs, attempt, r = Math.random()) {
  const ceil = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  return Math.floor(r * ceil);
}

/**
 * A random ID for `client_msg_id` and call IDs: 128 bits, URL-safe.
 * @param {string} [prefix]
 * @returns {string}
 */
export function randomId(prefix = '') {
  const b = new Uint8Array(16);
  globalThis.crypto.getRandomValues(b);
  let s = '';
  for (const x of b) s += x.toString(16).padStart(2, '0');
  return prefix + s;
}

/**
 * A client's position in one subscribed group: what to do with each
 * timeline event. Pure bookkeeping (a port of edge/client's timeline).
 */
export class Timeline {
  constructor() {
    /** Seq of the last event delivered to the application. */
    this.last = 0;
    /** Whether `last` is a position (set by `subscribed` or an event). */
    this.known = false;
    /**
     * Accept the next event above `last` even if it is not last+1: the
     * server said what lies between is gone (recovered: false).
     */
    this.rebase = false;
    /** Request id of our own subscribe in flight, or null. */
    this.resync = null;
    /** The seq that revealed a gap being filled; 0 if none. */
    this.gapAt = 0;
  }

  /**
   * Classify one timeline event, advancing `last` when it is delivered.
   * @param {number} seq
   * @returns {'deliver'|'recovered'|'duplicate'|'in-gap'|'resync'}
   */
  event(seq) {
    if (!this.known || (this.rebase && seq > this.last)) {
      this.last = seq;
      this.known = true;
      this.rebase = false;
      this.gapAt = 0;
      return 'deliver';
    }
    if (seq <= this.last) return 'duplicate';
    if (seq === this.last + 1) {
      this.last = seq;
      if (this.gapAt !== 0 && seq >= this.gapAt) {
        this.gapAt = 0;
        return 'recovered';
      }
      return 'deliver';
    }
    // Our subscribe with since=last is on its way; its replay brings
    // this event again, in order.
    if (this.resync !== null) return 'in-gap';
    if (this.gapAt === 0) this.gapAt = seq;
    return 'resync';
  }

  /**
   * Apply a `subscribed` frame; true when it tells of events that can no
   * longer be recovered, which the application must hear about.
   * @param {{id?: string, seq: number, recovered: boolean}} f
   * @returns {boolean}
   */
  subscribed(f) {
    if (f.id !== undefined && f.id === this.resync) this.resync = null;
    if (!this.known) {
      // First subscribe, without since: live from f.seq on.
      this.last = f.seq;
      this.known = true;
      return false;
    }
    if (f.recovered) return false;
    // The group has fewer events than we saw: another life of it. Take
    // whatever comes next.
    if (f.seq < this.last) this.last = 0;
    this.rebase = true;
    this.gapAt = 0;
    return true;
  }
}

/**
 * @typedef {object} ClientOptions
 * @property {string[]} urls edge WebSocket URLs (ws://host:port/v1/ws)
 * @property {string | ((opts: {refresh: boolean}) => string | Promise<string>)} token
 *   the token for `hello`, or a function called before every connection;
 *   `refresh` is true after the edge refused the previous token. A
 *   CausewayError with code `unauthorized` thrown by it ends the client.
 * @property {number} [minBackoffMs] default 100
 * @property {number} [maxBackoffMs] default 5000
 * @property {number} [requestTimeoutMs] how long a request may wait for
 *   its answer, reconnects included (default 30000)
 * @property {number} [helloTimeoutMs] default 10000
 * @property {number} [idleProbeMs] after this long without a frame, probe
 *   the connection (default 25000)
 * @property {number} [probeTimeoutMs] a probe unanswered this long means
 *   the connection is dead (default 10000)
 * @property {number} [resubscribeWindow] own resubscribes in flight after a
 *   reconnect (default 4)
 * @property {number} [typingIntervalMs] at most one `typing` per group per
 *   interval (default 2000)
 * @property {typeof WebSocket} [WebSocket] the WebSocket constructor
 *   (default globalThis.WebSocket; Node's `ws`, or a fake in tests)
 */

/**
 * @typedef {object} Req
 * @property {number} n order of creation
 * @property {string} type
 * @property {() => object} build the frame, without id, built at each send
 * @property {boolean} retry resend after a lost connection or a retryable error
 * @property {boolean} internal one of the client's own (no caller waits)
 * @property {boolean} windowed one of the resubscribes after a reconnect
 * @property {string|null} group
 * @property {string|null} id the id of the attempt in flight
 * @property {number} gen the connection it was written on; -1 if unsent
 * @property {object|undefined} result a `subscribed` frame kept for the ack
 * @property {number} attempts
 * @property {(v: any) => void} resolve
 * @property {(e: Error) => void} reject
 * @property {any} timer
 */

/**
 * A connection to Causeway that keeps itself connected. Events (all
 * CustomEvents, the frame in `detail`; `on()` is a shortcut):
 *
 * - `open` {user, session, edge, url, reconnect}: welcomed by an edge
 * - `reconnecting` {code, reason, delayMs, attempt}: connection lost
 * - `closed` {error}: the client ended (close(), or a fatal error)
 * - `msg`, `member`: each group's timeline, in seq order, once each
 * - `subscribed`: only with recovered=false: events were lost for good
 * - `receipts`, `read`, `typing`, `presence`, `signal`: as received
 *   (signals with a call_seq already seen are dropped)
 * - `error`: an error frame that answers no pending request, or a
 *   subscription the edge refused (with `group` filled in)
 * - `frame`: every frame received, before any of the above (debugging)
 */
export class CausewayClient extends EventTarget {
  /** @param {ClientOptions} opts */
  constructor(opts) {
    super();
    if (!opts || !Array.isArray(opts.urls) || opts.urls.length === 0) {
      throw new TypeError('causeway: options.urls must list at least one edge URL');
    }
    if (opts.token === undefined) throw new TypeError('causeway: options.token is required');
    this.opts = {
      minBackoffMs: 100,
      maxBackoffMs: 5000,
      requestTimeoutMs: 30000,
      helloTimeoutMs: 10000,
      idleProbeMs: 25000,
      probeTimeoutMs: 10000,
      resubscribeWindow: 4,
      typingIntervalMs: 2000,
      ...opts,
    };
    this.WS = opts.WebSocket || globalThis.WebSocket;
    if (typeof this.WS !== 'function') throw new TypeError('causeway: no WebSocket implementation');

    /** @type {'idle'|'connecting'|'open'|'suspended'|'closed'} */
    this.state = 'idle';
    /** Identity from the last `welcome`. */
    this.user = '';
    this.session = '';
    this.edge = '';
    this.url = '';
    /** Why the client ended, if it ended by itself. @type {Error|null} */
    this.error = null;
    /** Recovery counters, as in the Go client's SessionStats. */
    this.stats = {
      reconnects: 0,
      resubscribes: 0,
      gapsDetected: 0,
      gapsRecovered: 0,
      gapsUnrecoverable: 0,
      duplicatesDropped: 0,
      sendRetries: 0,
      duplicateSignals: 0,
      probes: 0,
    };

    this._urls = [...opts.urls];
    for (let i = this._urls.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [this._urls[i], this._urls[j]] = [this._urls[j], this._urls[i]];
    }
    this._urlNext = 0;
    this._ws = null;
    this._gen = 0; // connection generation: events of older sockets are ignored
    this._welcomed = false;
    this._attempt = 0;
    this._refused = 0; // hellos refused in a row
    this._unauthorized = false; // this connection's hello was refused
    this._upAt = 0;
    this._everOpen = false;
    this._timer = null; // reconnect or hello timer
    this._idleTimer = null;
    this._lastRx = 0;
    this._probeId = null;
    this._probeDeadline = 0;
    this._nextId = 0;
    this._nextReq = 0;
    /** @type {Map<string, Timeline>} */
    this._groups = new Map();
    /** Requests not yet answered, in creation order. @type {Set<Req>} */
    this._reqs = new Set();
    /** @type {Map<string, Req>} by the id of the attempt in flight */
    this._byId = new Map();
    this._resubQueue = [];
    this._resubInflight = 0;
    /** Users whose presence was asked for; asked again after a reconnect. */
    this._presence = new Set();
    this._readSent = new Map();
    this._typingAt = new Map();
    /** Last call_seq per call, sender and sending session. */
    this._callSeq = new Map();
    this._connectWaiters = [];
    this._onOnline = () => {
      // The network is back: do not wait out the backoff.
      if (this.state === 'connecting' && this._ws === null && this._timer !== null) {
        clearTimeout(this._timer);
        this._timer = null;
        this._dial();
      }
    };
    if (typeof globalThis.addEventListener === 'function') {
      globalThis.addEventListener('online', this._onOnline);
    }
  }

  /**
   * Connect, retrying across the edges until one welcomes the client.
   * Resolves with the welcome; rejects if the client ends first.
   * @returns {Promise<{user: string, session: string, edge: string}>}
   */
  connect() {
    if (this.state === 'closed') return Promise.reject(this._closedError());
    if (this.state === 'open') {
      return Promise.resolve({ user: this.user, session: this.session, edge: this.edge });
    }
    const p = new Promise((resolve, reject) => this._connectWaiters.push({ resolve, reject }));
    if (this.state === 'idle' || this.state === 'suspended') {
      this.state = 'connecting';
      this._dial();
    }
    return p;
  }

  /** End the client: close the connection, reject every pending request. */
  close() {
    if (this.state === 'closed') return;
    this._end(null);
  }

  /**
   * Disconnect but keep every subscription, position and queued request,
   * e.g. while a page is hidden; resume() reconnects and catches up.
   */
  suspend() {
    if (this.state === 'closed' || this.state === 'suspended') return;
    this._clearTimers();
    const ws = this._ws;
    this.state = 'suspended'; // before _lost, so it does not reconnect
    this._lost(1000, 'suspended');
    if (ws) this._closeSocket(ws, 1000, 'suspended');
  }

  /** Reconnect after suspend(). */
  resume() {
    if (this.state !== 'suspended') return;
    this.state = 'connecting';
    this._attempt = 0;
    this._dial();
  }

  /**
   * Drop the current connection and connect again (to the next edge),
   * e.g. after the network changed. Subscriptions resume with `since`.
   */
  reconnect() {
    if (this.state !== 'open' && this.state !== 'connecting') return;
    const ws = this._ws;
    if (!ws) return;
    this._lost(1000, 'reconnect requested');
    this._closeSocket(ws, 1000, 'reconnect');
  }

  /**
   * The last seq delivered of each subscribed group.
   * @returns {Map<string, number>}
   */
  positions() {
    const m = new Map();
    for (const [g, t] of this._groups) m.set(g, t.known ? t.last : 0);
    return m;
  }

  /**
   * Register a listener for one event type; returns a function that
   * removes it. The listener gets the event's detail (the frame).
   * @param {string} type
   * @param {(detail: any) => void} fn
   * @returns {() => void}
   */
  on(type, fn) {
    const h = (/** @type {CustomEvent} */ e) => fn(e.detail);
    this.addEventListener(type, h);
    return () => this.removeEventListener(type, h);
  }

  // ---- requests -------------------------------------------------------

  /**
   * Become a member of group (a `member` event; idempotent).
   * @param {string} group
   */
  join(group) {
    return this._request('join', () => ({ type: 'join', group }), { retry: true, group });
  }

  /**
   * Stop being a member; forgets the group's subscription.
   * @param {string} group
   */
  leave(group) {
    this._forget(group);
    return this._request('leave', () => ({ type: 'leave', group }), { retry: true, group });
  }

  /**
   * Attach to group's live stream, kept across reconnects until
   * unsubscribe() or leave(). With `since` (first subscribe only), first
   * receive every timeline event after it (since: 0 = the group's whole
   * kept history). Resolves with the `subscribed` frame once the replay
   * has been delivered.
   * @param {string} group
   * @param {{since?: number}} [opts]
   */
  subscribe(group, opts = {}) {
    let t = this._groups.get(group);
    if (!t) {
      t = new Timeline();
      if (typeof opts.since === 'number') {
        t.last = opts.since;
        t.known = true;
      }
      this._groups.set(group, t);
    }
    const p = this._request('subscribe', () => this._subscribeFrame(group), { retry: true, group });
    return p.catch((err) => {
      // Refused (not_member, forbidden...): nothing to keep subscribed.
      if (err instanceof CausewayError && !RETRYABLE.has(err.code)) this._forget(group);
      throw err;
    });
  }

  /**
   * Detach from group and forget its position.
   * @param {string} group
   */
  unsubscribe(group) {
    this._forget(group);
    return this._request('unsubscribe', () => ({ type: 'unsubscribe', group }), { retry: true, group });
  }

  /**
   * Post a message. Resolves with the ack ({group, seq}). Retried with
   * the same client_msg_id until answered or requestTimeoutMs; pass your
   * own clientMsgId to match the message when it comes back as a `msg`.
   * @param {string} group
   * @param {any} body any JSON value
   * @param {{clientMsgId?: string}} [opts]
   */
  send(group, body, opts = {}) {
    const clientMsgId = opts.clientMsgId || randomId('m');
    const frame = { type: 'send', group, client_msg_id: clientMsgId, body };
    return this._request('send', () => frame, { retry: true, group });
  }

  /**
   * Read receipt: everything up to seq is read. A seq not above the last
   * one sent for the group is not sent again (resolves null).
   * @param {string} group
   * @param {number} seq
   */
  read(group, seq) {
    if ((this._readSent.get(group) || 0) >= seq) return Promise.resolve(null);
    this._readSent.set(group, seq);
    return this._request('read', () => ({ type: 'read', group, seq }), { retry: true, group });
  }

  /**
   * Typing indicator for group, at most once per typingIntervalMs;
   * fire and forget (sent without an id: an error comes as an `error`
   * event). Returns whether a frame was sent.
   * @param {string} group
   * @returns {boolean}
   */
  typing(group) {
    const now = Date.now();
    if (now - (this._typingAt.get(group) || 0) < this.opts.typingIntervalMs) return false;
    if (!this._write([{ type: 'typing', group }])) return false;
    this._typingAt.set(group, now);
    return true;
  }

  /**
   * Ask for the presence of users; their later changes are pushed as
   * `presence` events. Asked again on every new connection.
   * @param {string[]} users
   */
  presence(users) {
    for (const u of users) this._presence.add(u);
    return this._request('presence', () => ({ type: 'presence', users: [...users] }), { retry: true });
  }

  /**
   * Relay a WebRTC signal to a user's sessions, or one session. Not
   * resent once written if the connection is lost before the answer
   * (it rejects with `disconnected`): a signal is only worth its moment.
   * @param {string} to user ID
   * @param {string} call call ID
   * @param {'offer'|'answer'|'ice'|'bye'|'cancel'|string} kind
   * @param {any} payload
   * @param {{toSession?: string}} [opts]
   */
  signal(to, call, kind, payload, opts = {}) {
    const frame = { type: 'signal', to, call, kind, payload: payload === undefined ? null : payload };
    if (opts.toSession) frame.to_session = opts.toSession;
    return this._request('signal', () => frame, { retry: false });
  }

  // ---- internals: requests ----------------------------------------------

  _subscribeFrame(group) {
    const t = this._groups.get(group);
    const f = { type: 'subscribe', group };
    if (t && t.known) f.since = t.last;
    return f;
  }

  /**
   * @param {string} type
   * @param {() => object} build
   * @param {{retry: boolean, group?: string, internal?: boolean, windowed?: boolean}} o
   * @returns {Promise<any>}
   */
  _request(type, build, o) {
    if (this.state === 'closed') return Promise.reject(this._closedError());
    return new Promise((resolve, reject) => {
      /** @type {Req} */
      const r = {
        n: this._nextReq++,
        type,
        build,
        retry: o.retry,
        internal: !!o.internal,
        windowed: !!o.windowed,
        group: o.group ?? null,
        id: null,
        gen: -1,
        result: undefined,
        attempts: 0,
        resolve,
        reject,
        timer: null,
      };
      r.timer = setTimeout(() => {
        this._settle(r);
        if (r.type === 'subscribe' && this.state === 'open') {
          // A subscribe unanswered: its group would stay silently
          // detached. Start over on a fresh connection, which
          // resubscribes every group.
          this._forceReconnect('no answer to a resubscribe');
        }
        reject(new CausewayError('timeout', `no answer to ${type} within ${this.opts.requestTimeoutMs} ms`));
      }, this.opts.requestTimeoutMs);
      this._reqs.add(r);
      if (this._welcomed) this._sendReq(r);
    });
  }

  /** Write one request attempt with a fresh id. */
  _sendReq(r) {
    if (r.id !== null) this._byId.delete(r.id);
    r.id = String(++this._nextId);
    const f = { ...r.build(), id: r.id };
    if (r.type === 'subscribe' && r.group !== null) {
      const t = this._groups.get(r.group);
      if (t) t.resync = r.id;
    }
    this._byId.set(r.id, r);
    if (r.attempts++ > 0) this.stats.sendRetries++;
    if (this._write([f])) {
      r.gen = this._gen;
    } else {
      r.gen = -1;
    }
  }

  /** Remove a request from the books (it is answered or given up). */
  _settle(r) {
    clearTimeout(r.timer);
    this._reqs.delete(r);
    if (r.id !== null) this._byId.delete(r.id);
    if (r.windowed) {
      r.windowed = false;
      this._resubInflight--;
      this._pumpResubscribes();
    }
  }

  _forget(group) {
    this._groups.delete(group);
    this._readSent.delete(group);
  }

  // ---- internals: connection ---------------------------------------------

  async _dial() {
    if (this.state !== 'connecting') return;
    const gen = ++this._gen;
    const url = this._urls[this._urlNext % this._urls.length];
    let token;
    try {
      token = typeof this.opts.token === 'function'
        ? await this.opts.token({ refresh: this._refused > 0 })
        : this.opts.token;
    } catch (err) {
      if (gen !== this._gen || this.state !== 'connecting') return;
      if (err instanceof CausewayError && err.code === 'unauthorized') {
        this._end(err);
        return;
      }
      // The token source may be the edge that is down: try again later.
      this._retryLater(0, `token: ${err && err.message ? err.message : err}`);
      return;
    }
    if (gen !== this._gen || this.state !== 'connecting') return;
    let ws;
    try {
      ws = new this.WS(url, SUBPROTOCOL);
    } catch (err) {
      this._urlNext++;
      this._retryLater(0, `bad URL ${url}: ${err && err.message}`);
      return;
    }
    this._ws = ws;
    this.url = url;
    this._welcomed = false;
    this._unauthorized = false;
    this._timer = setTimeout(() => {
      if (gen !== this._gen) return;
      this._closeSocket(ws, 4000, 'no welcome');
      this._lost(1006, `no welcome within ${this.opts.helloTimeoutMs} ms`);
    }, this.opts.helloTimeoutMs);
    ws.onopen = () => {
      if (gen !== this._gen) return;
      if (ws.protocol && ws.protocol !== SUBPROTOCOL) {
        this._closeSocket(ws, 1002, 'subprotocol');
        this._end(new CausewayError('bad_request', `edge chose subprotocol ${ws.protocol}`));
        return;
      }
      // resume: the session this client had, so signals addressed to it
      // mid-call are redirected to the new one (PROTOCOL.md, hello).
      const hello = { type: 'hello', id: 'hello', token };
      if (this.session) hello.resume = this.session;
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (ev) => {
      if (gen !== this._gen) return;
      this._lastRx = Date.now();
      if (typeof ev.data !== 'string') return; // v1 is text only
      for (const line of ev.data.split('\n')) {
        if (line.trim() === '') continue;
        let f;
        try {
          f = JSON.parse(line);
        } catch {
          continue; // not ours to crash on; the edge never sends this
        }
        this._frame(f);
        if (gen !== this._gen) return; // the frame ended this connection
      }
    };
    ws.onclose = (ev) => {
      if (gen !== this._gen) return;
      this._lost(ev.code, ev.reason || '');
    };
    // onerror is always followed by onclose, which does the work.
    ws.onerror = () => {};
  }

  /** Handle one frame of the current connection. */
  _frame(f) {
    this._emit('frame', f);
    if (!this._welcomed) {
      if (f.type === 'welcome') {
        this._welcome(f);
      } else if (f.type === 'error' && f.code === 'unauthorized') {
        this._unauthorized = true; // the close (4401) follows
      }
      return;
    }
    if (this._probeId !== null && f.id === this._probeId) {
      this._probeId = null; // any answer proves the connection lives
      return;
    }
    const r = f.id !== undefined ? this._byId.get(String(f.id)) : undefined;
    switch (f.type) {
      case 'msg':
      case 'member':
        this._timelineEvent(f);
        return;
      case 'subscribed':
        this._subscribed(f, r);
        return;
      case 'ack':
        if (r) {
          this._settle(r);
          r.resolve(r.result !== undefined ? r.result : f);
          return;
        }
        break;
      case 'error':
        if (r) {
          this._requestError(r, f);
          return;
        }
        break;
      case 'signal':
        if (this._duplicateSignal(f)) {
          this.stats.duplicateSignals++;
          return;
        }
        break;
    }
    this._emit(f.type, f);
  }

  _welcome(f) {
    clearTimeout(this._timer);
    this._timer = null;
    this._welcomed = true;
    this._refused = 0;
    this._upAt = Date.now();
    this._lastRx = this._upAt;
    this.user = f.user;
    this.session = f.session;
    this.edge = f.edge;
    this.state = 'open';
    const reconnect = this._everOpen;
    if (reconnect) this.stats.reconnects++;
    this._everOpen = true;
    this._startIdleTimer();
    // Resubscribe every group an app subscribe is not already bringing,
    // from its last delivered seq, a window at a time.
    const pendingSub = new Set();
    for (const r of this._reqs) if (r.type === 'subscribe' && !r.internal) pendingSub.add(r.group);
    this._resubQueue = [];
    this._resubInflight = 0;
    for (const g of this._groups.keys()) if (!pendingSub.has(g)) this._resubQueue.push(g);
    this._pumpResubscribes();
    // Then what waited for a connection, in the order it was asked.
    for (const r of [...this._reqs]) if (r.gen === -1 && !r.internal) this._sendReq(r);
    if (this._presence.size > 0) {
      this._request('presence', () => ({ type: 'presence', users: [...this._presence] }), { retry: false, internal: true })
        .catch(() => {});
    }
    const w = { user: this.user, session: this.session, edge: this.edge, url: this.url, reconnect };
    for (const c of this._connectWaiters.splice(0)) c.resolve(w);
    this._emit('open', w);
  }

  _pumpResubscribes() {
    if (!this._welcomed) return;
    while (this._resubInflight < this.opts.resubscribeWindow && this._resubQueue.length > 0) {
      const g = this._resubQueue.shift();
      if (!this._groups.has(g)) continue; // unsubscribed meanwhile
      this._resubInflight++;
      this._ownSubscribe(g, true);
    }
  }

  /** One of the client's own subscribes: after a reconnect or for a gap. */
  _ownSubscribe(group, windowed) {
    this.stats.resubscribes++;
    this._request('subscribe', () => this._subscribeFrame(group), { retry: true, group, internal: true, windowed })
      .catch((err) => {
        if (this.state === 'closed' || (err instanceof CausewayError && err.code === 'disconnected')) return;
        if (err instanceof CausewayError && !RETRYABLE.has(err.code) && err.code !== 'timeout') {
          // not_member, forbidden...: the group cannot be subscribed
          // any more. Tell the app, with the group the frame lacks.
          this._forget(group);
          this._emit('error', { ...(err.frame || {}), type: 'error', code: err.code, message: err.message, group });
        }
      });
  }

  _subscribed(f, r) {
    const t = this._groups.get(f.group);
    if (r) r.result = f;
    if (!t) return;
    if (t.subscribed(f)) {
      this.stats.gapsUnrecoverable++;
      this._emit('subscribed', f);
    }
  }

  _timelineEvent(f) {
    const t = this._groups.get(f.group);
    if (!t) return; // unsubscribed: a straggler
    switch (t.event(f.seq)) {
      case 'recovered':
        this.stats.gapsRecovered++;
      // falls through
      case 'deliver':
        this._emit(f.type, f);
        return;
      case 'duplicate':
        this.stats.duplicatesDropped++;
        return;
      case 'in-gap':
        return;
      case 'resync':
        this.stats.gapsDetected++;
        this._ownSubscribe(f.group, false);
    }
  }

  _requestError(r, f) {
    if (r.retry && RETRYABLE.has(f.code)) {
      // The connection is fine but the backend is not: wait a little,
      // then the same frame again (same client_msg_id).
      const gen = this._gen;
      const oldId = r.id;
      r.gen = -2; // neither sent nor waiting for a connection
      setTimeout(() => {
        if (!this._reqs.has(r) || r.id !== oldId) return;
        if (this._welcomed && gen === this._gen) this._sendReq(r);
        else r.gen = -1; // the next welcome sends it
      }, backoff(this.opts.minBackoffMs, this.opts.maxBackoffMs, r.attempts));
      return;
    }
    this._settle(r);
    r.reject(new CausewayError(f.code, f.message || '', f));
  }

  _duplicateSignal(f) {
    if (typeof f.call_seq !== 'number' || !f.call) return false;
    const key = `${f.call}\n${f.from}\n${f.from_session || ''}`;
    const last = this._callSeq.get(key) || 0;
    if (f.call_seq <= last) return true;
    this._callSeq.delete(key); // re-insert: the map stays in recency order
    this._callSeq.set(key, f.call_seq);
    if (this._callSeq.size > 1000) this._callSeq.delete(this._callSeq.keys().next().value);
    return false;
  }

  /** Write frames as one NDJSON message; false when not connected. */
  _write(frames) {
    const ws = this._ws;
    if (!ws || !this._welcomed || ws.readyState !== 1) return false;
    try {
      ws.send(frames.map((f) => JSON.stringify(f)).join('\n'));
      return true;
    } catch {
      return false;
    }
  }

  _startIdleTimer() {
    clearInterval(this._idleTimer);
    const every = Math.max(250, Math.min(this.opts.idleProbeMs, this.opts.probeTimeoutMs) / 2);
    this._idleTimer = setInterval(() => this._checkIdle(), every);
  }

  /**
   * Browsers answer the edge's pings without telling the page, and a
   * half-open TCP connection can stay silent for minutes. After
   * idleProbeMs without a frame, send a probe; without an answer in
   * probeTimeoutMs, the connection is dead. The probe is a `ping`
   * frame, which the edge answers itself with an ack, touching neither
   * Kafka nor any state.
   */
  _checkIdle() {
    if (!this._welcomed) return;
    const now = Date.now();
    if (this._probeId !== null) {
      if (now > this._probeDeadline) {
        this._probeId = null;
        this._forceReconnect('no answer to a liveness probe');
      }
      return;
    }
    if (now - this._lastRx >= this.opts.idleProbeMs) {
      this._probeId = `probe-${++this._nextId}`;
      this._probeDeadline = now + this.opts.probeTimeoutMs;
      this.stats.probes++;
      this._write([{ type: 'ping', id: this._probeId }]);
    }
  }

  _forceReconnect(reason) {
    const ws = this._ws;
    if (!ws) return;
    this._lost(1006, reason);
    this._closeSocket(ws, 4000, reason);
  }

  _closeSocket(ws, code, reason) {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      // Browsers accept only 1000 and 3000-4999 from a page.
      ws.close(code === 1000 || (code >= 3000 && code <= 4999) ? code : 1000, reason.slice(0, 120));
    } catch {
      /* already closed */
    }
  }

  /** The current connection ended (code as in a close event). */
  _lost(code, reason) {
    const wasWelcomed = this._welcomed;
    const gen = this._gen;
    this._gen++; // ignore anything more from the old socket
    this._ws = null;
    this._welcomed = false;
    this._probeId = null;
    this._clearTimers();
    // What was written on the lost connection: requests that may be
    // repeated go again on the next one; the rest fail now, since
    // whether they took effect is unknown.
    for (const r of [...this._reqs]) {
      if (r.internal) {
        // The next welcome resubscribes every group anyway.
        this._settle(r);
        r.reject(new CausewayError('disconnected', 'connection lost'));
      } else if (r.gen === gen || r.gen === -2) {
        if (r.retry) {
          r.gen = -1;
        } else {
          this._settle(r);
          r.reject(new CausewayError('disconnected', `connection lost before the answer to ${r.type}`));
        }
      }
    }
    this._resubQueue = [];
    this._resubInflight = 0;
    for (const t of this._groups.values()) t.resync = null;
    if (this.state === 'closed' || this.state === 'suspended') return;
    if (FATAL_CLOSE.has(code)) {
      this._end(new CausewayError('bad_request', `edge closed the connection with ${code}: ${reason}`));
      return;
    }
    if (code === CLOSE_UNAUTHORIZED || this._unauthorized) {
      // A refused token is fetched again at once (refresh: true); a
      // fresh one refused too is fatal.
      this._refused++;
      if (this._refused >= 2) {
        this._end(new CausewayError('unauthorized', `the edge refused a fresh token: ${reason}`));
        return;
      }
      // Same edge, new token, no wait.
      this.state = 'connecting';
      this._emit('reconnecting', { code, reason, delayMs: 0, attempt: this._attempt });
      this._dial();
      return;
    }
    // A connection that lived longer than the longest backoff was
    // healthy: start the backoff over. One that dies at once keeps
    // growing it, so a flapping edge is not hammered.
    if (wasWelcomed && Date.now() - this._upAt > this.opts.maxBackoffMs) this._attempt = 0;
    this._urlNext++; // this edge may be the one going away
    this._retryLater(code, reason, code === CLOSE_POLICY ? this.opts.maxBackoffMs : undefined);
  }

  _retryLater(code, reason, delayMs) {
    this.state = 'connecting';
    const d = delayMs ?? backoff(this.opts.minBackoffMs, this.opts.maxBackoffMs, this._attempt);
    this._emit('reconnecting', { code, reason, delayMs: d, attempt: this._attempt });
    this._attempt++;
    clearTimeout(this._timer);
    this._timer = setTimeout(() => {
      this._timer = null;
      this._dial();
    }, d);
  }

  _clearTimers() {
    clearTimeout(this._timer);
    this._timer = null;
    clearInterval(this._idleTimer);
    this._idleTimer = null;
  }

  _closedError() {
    return this.error || new CausewayError('closed', 'client closed');
  }

  _end(err) {
    const ws = this._ws;
    this.state = 'closed';
    this.error = err;
    this._clearTimers();
    this._gen++;
    this._ws = null;
    this._welcomed = false;
    if (ws) this._closeSocket(ws, 1000, 'bye');
    if (typeof globalThis.removeEventListener === 'function') {
      globalThis.removeEventListener('online', this._onOnline);
    }
    const e = this._closedError();
    for (const r of [...this._reqs]) {
      this._settle(r);
      r.reject(e);
    }
    for (const c of this._connectWaiters.splice(0)) c.reject(e);
    this._emit('closed', { error: err });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
