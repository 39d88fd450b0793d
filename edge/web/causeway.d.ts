// Type declarations for causeway.js (docs/PROTOCOL.md, causeway.v1).

export const SUBPROTOCOL: 'causeway.v1';

/** Error codes of PROTOCOL.md, plus the client's own local failures. */
export type ErrorCode =
  | 'bad_request'
  | 'unauthorized'
  | 'forbidden'
  | 'not_member'
  | 'too_large'
  | 'rate_limited'
  | 'unavailable'
  | 'internal'
  | 'timeout'
  | 'disconnected'
  | 'closed'
  | (string & {});

export class CausewayError extends Error {
  constructor(code: ErrorCode, message: string, frame?: ErrorFrame);
  readonly code: ErrorCode;
  /** The error frame, when the edge sent one. */
  readonly frame?: ErrorFrame;
}

/** Full-jitter backoff: uniform in [0, min(maxMs, minMs * 2^attempt)). */
export function backoff(minMs: number, maxMs: number, attempt: number, r?: number): number;

/** A random 128-bit hex ID, for client_msg_id and call IDs. */
export function randomId(prefix?: string): string;

export type Verdict = 'deliver' | 'recovered' | 'duplicate' | 'in-gap' | 'resync';

/** A client's position in one subscribed group. */
export class Timeline {
  last: number;
  known: boolean;
  rebase: boolean;
  resync: string | null;
  gapAt: number;
  event(seq: number): Verdict;
  subscribed(f: { id?: string; seq: number; recovered: boolean }): boolean;
}

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

// ---- frames from the edge ------------------------------------------------

export interface WelcomeFrame { type: 'welcome'; id?: string; user: string; session: string; edge: string }
export interface AckFrame { type: 'ack'; id?: string; group?: string; seq?: number }
export interface SubscribedFrame {
  type: 'subscribed'; id?: string; group: string; seq: number; read_seq: number; recovered: boolean;
}
export interface MsgFrame {
  type: 'msg'; group: string; seq: number; from: string; client_msg_id: string; ts: number; body: Json;
}
export interface MemberFrame {
  type: 'member'; group: string; seq: number; user: string; event: 'joined' | 'left'; ts: number;
}
export interface ReceiptsFrame {
  type: 'receipts'; group: string; members: number; reads: { seq: number; count: number }[];
}
export interface ReadFrame { type: 'read'; group: string; seq: number }
export interface TypingFrame { type: 'typing'; group: string; users: string[] }
export type SignalKind = 'offer' | 'answer' | 'ice' | 'bye' | 'cancel' | 'answered_elsewhere';
export interface SignalFrame {
  type: 'signal'; from: string; from_session: string; call: string; call_seq: number;
  kind: SignalKind | (string & {}); payload: Json;
}
export interface PresenceFrame {
  type: 'presence'; user: string; status: 'online' | 'offline'; sessions: number; ts: number;
}
export interface ErrorFrame { type: 'error'; id?: string; code: ErrorCode; message: string; group?: string }

export type ServerFrame =
  | WelcomeFrame | AckFrame | SubscribedFrame | MsgFrame | MemberFrame | ReceiptsFrame
  | ReadFrame | TypingFrame | SignalFrame | PresenceFrame | ErrorFrame;

export interface Welcome { user: string; session: string; edge: string; url: string; reconnect: boolean }

/** Event type -> the CustomEvent detail the client dispatches. */
export interface ClientEventMap {
  open: Welcome;
  reconnecting: { code: number; reason: string; delayMs: number; attempt: number };
  closed: { error: Error | null };
  msg: MsgFrame;
  member: MemberFrame;
  /** Only with recovered: false. */
  subscribed: SubscribedFrame;
  receipts: ReceiptsFrame;
  read: ReadFrame;
  typing: TypingFrame;
  signal: SignalFrame;
  presence: PresenceFrame;
  error: ErrorFrame;
  frame: ServerFrame;
}

export interface ClientOptions {
  /** Edge WebSocket URLs, e.g. ws://127.0.0.1:8080/v1/ws. */
  urls: string[];
  /** The hello token, or a function called before every connection. */
  token: string | ((opts: { refresh: boolean }) => string | Promise<string>);
  minBackoffMs?: number;
  maxBackoffMs?: number;
  requestTimeoutMs?: number;
  helloTimeoutMs?: number;
  idleProbeMs?: number;
  probeTimeoutMs?: number;
  resubscribeWindow?: number;
  typingIntervalMs?: number;
  WebSocket?: new (url: string, protocols?: string | string[]) => WebSocket;
}

export interface ClientStats {
  reconnects: number;
  resubscribes: number;
  gapsDetected: number;
  gapsRecovered: number;
  gapsUnrecoverable: number;
  duplicatesDropped: number;
  sendRetries: number;
  duplicateSignals: number;
  probes: number;
}

export class CausewayClient extends EventTarget {
  constructor(opts: ClientOptions);
  readonly opts: Required<Omit<ClientOptions, 'WebSocket'>> & Pick<ClientOptions, 'WebSocket'>;
  readonly state: 'idle' | 'connecting' | 'open' | 'suspended' | 'closed';
  readonly user: string;
  readonly session: string;
  readonly edge: string;
  readonly url: string;
  readonly error: Error | null;
  readonly stats: ClientStats;

  connect(): Promise<Welcome>;
  close(): void;
  suspend(): void;
  resume(): void;
  reconnect(): void;
  positions(): Map<string, number>;
  on<K extends keyof ClientEventMap>(type: K, fn: (detail: ClientEventMap[K]) => void): () => void;

  join(group: string): Promise<AckFrame>;
  leave(group: string): Promise<AckFrame>;
  subscribe(group: string, opts?: { since?: number }): Promise<SubscribedFrame>;
  unsubscribe(group: string): Promise<AckFrame>;
  send(group: string, body: Json, opts?: { clientMsgId?: string }): Promise<AckFrame>;
  read(group: string, seq: number): Promise<AckFrame | null>;
  typing(group: string): boolean;
  presence(users: string[]): Promise<AckFrame>;
  signal(
    to: string, call: string, kind: SignalKind | (string & {}), payload: Json,
    opts?: { toSession?: string },
  ): Promise<AckFrame>;
}
