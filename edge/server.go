package edge

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path"
	"sync"
	"sync/atomic"
	"time"

	"github.com/causeway/causeway/edge/web"
	"github.com/causeway/causeway/pipeline"
	"github.com/causeway/causeway/schemas"
	pb "github.com/causeway/causeway/schemas/causewaypb"
	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"
)

// Config configures an edge.
type Config struct {
	// ID names the edge; it must be unique among running edges and is
	// the key of its delivery slot.
	ID       string
	HTTPAddr string
	Kafka    pipeline.KafkaConfig
	Layout   pipeline.Layout
	// Secret verifies HS256 tokens.
	Secret []byte
	// AllowedOrigins are host patterns accepted in the Origin header of
	// the upgrade, beyond the edge's own host; "*" allows any.
	AllowedOrigins []string
	// MaxFrameBytes limits one client frame (too_large beyond it).
	MaxFrameBytes int
	// MaxMessageBytes limits one WebSocket message (close 1009 beyond).
	MaxMessageBytes int
	// QueueFrames and QueueBytes are the soft bounds of a connection's
	// send queue: it may stay over them for at most SlowConsumerAfter (a
	// burst such as a history replay) and never grow past 2*QueueBytes;
	// beyond that the client is closed with 4409.
	QueueFrames       int
	QueueBytes        int
	SlowConsumerAfter time.Duration
	// SignalTTL: a signal older than this is never delivered (a stale
	// offer must not ring), here or by the sequencer.
	SignalTTL time.Duration
	// MaxBadFrames in a row close the connection with 4400.
	MaxBadFrames      int
	HelloTimeout      time.Duration
	WriteTimeout      time.Duration
	PingInterval      time.Duration
	PongTimeout       time.Duration
	HeartbeatInterval time.Duration
	// ProduceTimeout bounds how long a request waits to be written to
	// Kafka before the client gets `unavailable`.
	ProduceTimeout time.Duration
	// Registry serves /metrics; the edge registers its metrics on it.
	Registry *prometheus.Registry
	Logger   *slog.Logger

	// Browser demo (edge/web). DevTokens serves GET /dev/token?user=NAME,
	// which mints a token signed with Secret for anyone who asks, so an
	// edge with it on authenticates nobody: only `causeway dev` turns it
	// on. Minted tokens allow DevTokenGroups and live DevTokenTTL; both
	// are required when DevTokens is on and ignored otherwise.
	DevTokens      bool
	DevTokenGroups []string
	DevTokenTTL    time.Duration
}

// DefaultConfig returns the documented defaults (README, configuration).
func DefaultConfig() Config {
	return Config{
		ID:                "edge-1",
		HTTPAddr:          "127.0.0.1:8080",
		Layout:            pipeline.DefaultLayout(),
		MaxFrameBytes:     64 << 10,
		MaxMessageBytes:   256 << 10,
		QueueFrames:       4096,
		QueueBytes:        4 << 20,
		SlowConsumerAfter: 5 * time.Second,
		SignalTTL:         30 * time.Second,
		MaxBadFrames:      20,
		HelloTimeout:      10 * time.Second,
		WriteTimeout:      10 * time.Second,
		PingInterval:      20 * time.Second,
		PongTimeout:       10 * time.Second,
		HeartbeatInterval: 3 * time.Second,
		ProduceTimeout:    10 * time.Second,
	}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if err := c.Kafka.Validate(); err != nil {
		return err
	}
	if err := c.Layout.Validate(); err != nil {
		return err
	}
	switch {
	case !ValidGroupID(c.ID):
		return fmt.Errorf("edge.id %q: must be 1-128 of A-Z a-z 0-9 . _ - : @ +", c.ID)
	case len(c.Secret) == 0:
		return errors.New("auth.secret must not be empty")
	case c.MaxFrameBytes < 1024:
		return fmt.Errorf("edge.max_frame_bytes %d: must be at least 1024", c.MaxFrameBytes)
	case c.MaxMessageBytes < c.MaxFrameBytes:
		return fmt.Errorf("edge.max_message_bytes %d: must be at least edge.max_frame_bytes (%d)", c.MaxMessageBytes, c.MaxFrameBytes)
	case c.QueueFrames < 16:
		return fmt.Errorf("edge.queue_frames %d: must be at least 16", c.QueueFrames)
	case c.QueueBytes < c.MaxMessageBytes:
		return fmt.Errorf("edge.queue_bytes %d: must be at least edge.max_message_bytes (%d)", c.QueueBytes, c.MaxMessageBytes)
	case c.MaxBadFrames < 1:
		return fmt.Errorf("edge.max_bad_frames %d: must be at least 1", c.MaxBadFrames)
	case c.HelloTimeout <= 0 || c.WriteTimeout <= 0 || c.PingInterval <= 0 || c.PongTimeout <= 0 || c.HeartbeatInterval <= 0 || c.ProduceTimeout <= 0 || c.SlowConsumerAfter <= 0 || c.SignalTTL <= 0:
		return errors.New("edge timeouts and intervals must be positive")
	}
	if c.DevTokens {
		if c.DevTokenTTL <= 0 {
			return fmt.Errorf("edge dev token ttl %s: must be positive when dev tokens are on", c.DevTokenTTL)
		}
		if len(c.DevTokenGroups) == 0 {
			return errors.New("edge dev token groups: must not be empty when dev tokens are on")
		}
		for _, p := range c.DevTokenGroups {
			if _, err := path.Match(p, ""); err != nil {
				return fmt.Errorf("edge dev token group pattern %q: %w", p, err)
			}
		}
	}
	return nil
}

type metrics struct {
	conns     prometheus.Gauge
	framesIn  *prometheus.CounterVec
	framesOut prometheus.Counter
	errors    *prometheus.CounterVec
	slow      prometheus.Counter
	detached  prometheus.Counter
	// signalsExpired counts signals dropped at the edge past their TTL.
	signalsExpired prometheus.Counter
	deliveries     prometheus.Counter
	undecoded      *prometheus.CounterVec
}

var knownFrames = map[string]bool{"hello": true, "join": true, "leave": true, "subscribe": true, "unsubscribe": true,
	"send": true, "read": true, "typing": true, "signal": true, "presence": true, "invalid": true}

// frameIn counts a client frame; labels stay bounded.
func (m *metrics) frameIn(typ string) {
	if !knownFrames[typ] {
		typ = "unknown"
	}
	m.framesIn.WithLabelValues(typ).Inc()
}

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		conns: prometheus.NewGauge(prometheus.GaugeOpts{Name: "causeway_edge_connections", Help: "Open client WebSockets."}),
		framesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "causeway_edge_frames_in_total", Help: "Client frames received, by type."}, []string{"type"}),
		framesOut: prometheus.NewCounter(prometheus.CounterOpts{Name: "causeway_edge_frames_out_total", Help: "Frames written to clients."}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "causeway_edge_errors_total", Help: "Error frames sent, by code."}, []string{"code"}),
		slow: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "causeway_edge_slow_consumer_disconnects_total", Help: "Clients cut off for not reading: send queue full, or a write blocked for edge.write_timeout."}),
		signalsExpired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "causeway_edge_signals_expired_total", Help: "Signals dropped by the edge because they arrived after their TTL."}),
		detached: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "causeway_edge_sessions_detached_total", Help: "Clients closed with going_away because the sequencer expired their attachment (this edge's heartbeats stopped reaching Kafka)."}),
		deliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "causeway_edge_deliveries_total", Help: "Delivery records consumed for this edge."}),
		undecoded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "causeway_records_undecodable_total", Help: "Records that could not be decoded and were skipped."}, []string{"topic"}),
	}
	if r != nil {
		r.MustRegister(m.conns, m.framesIn, m.framesOut, m.errors, m.slow, m.detached, m.signalsExpired, m.deliveries, m.undecoded)
	}
	return m
}

// Server is one edge: the WebSocket endpoint, its producer into the group
// log and its consumer of its delivery slot.
type Server struct {
	cfg      Config
	log      *slog.Logger
	m        *metrics
	verifier *Verifier
	ln       net.Listener
	// incarnation names this run of the edge, so sequencers can expire a
	// predecessor's sessions as soon as this run heartbeats.
	incarnation string
	slot        int32
	prod        *kgo.Client
	cons        *kgo.Client

	mu       sync.RWMutex
	sessions map[string]*conn

	conns sync.WaitGroup // connection handlers

	lastHeartbeat atomic.Int64 // unix nanos of the last successful heartbeat
	consuming     atomic.Bool
	draining      atomic.Bool
}

// New validates cfg, binds the HTTP address and creates the Kafka clients.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("edge config: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	v, err := NewVerifier(cfg.Secret)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:         cfg,
		log:         cfg.Logger.With("role", "edge", "edge", cfg.ID),
		m:           newMetrics(cfg.Registry),
		verifier:    v,
		slot:        pipeline.PartitionFor(cfg.ID, cfg.Layout.DeliveryPartitions),
		incarnation: newSessionID()[1:],
		sessions:    make(map[string]*conn),
	}
	s.prod, err = kgo.NewClient(append(cfg.Kafka.Opts(),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// A request that cannot be written within this time is answered
		// `unavailable` instead of waiting forever. Failing a record whose
		// fate is unknown may let the client's retry land twice in the
		// log; the sequencer dedups sends by client_msg_id and joins,
		// attaches and detaches are idempotent, so that is harmless.
		kgo.RecordDeliveryTimeout(cfg.ProduceTimeout),
		kgo.AllowIdempotentProduceCancellation(),
	)...)
	if err != nil {
		return nil, fmt.Errorf("create edge producer: %w", err)
	}
	s.cons, err = kgo.NewClient(append(cfg.Kafka.Opts(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()),
		kgo.FetchMaxWait(250*time.Millisecond),
	)...)
	if err != nil {
		s.prod.Close()
		return nil, fmt.Errorf("create edge consumer: %w", err)
	}
	s.ln, err = net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		s.prod.Close()
		s.cons.Close()
		return nil, fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	return s, nil
}

// Addr is the bound HTTP address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Ready reports whether the edge can produce and is consuming its slot.
func (s *Server) Ready() bool {
	last := s.lastHeartbeat.Load()
	return !s.draining.Load() && s.consuming.Load() && last != 0 &&
		time.Since(time.Unix(0, last)) < 3*s.cfg.HeartbeatInterval+2*time.Second
}

// Handler serves /v1/ws, /healthz, /readyz, /metrics, the browser demo at
// / and, when Config.DevTokens is on, /dev/token.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/ws", s.serveWS)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{}))

	// Browser demo and client library (edge/web). /dev/token answers 404
	// unless DevTokens is on; it is registered either way so no static
	// file can ever be served under that path.
	var mint web.MintFunc
	if s.cfg.DevTokens {
		mint = func(user string) (string, []string, time.Time, error) {
			now := time.Now()
			tok, err := Mint(s.cfg.Secret, user, s.cfg.DevTokenGroups, s.cfg.DevTokenTTL, now)
			return tok, s.cfg.DevTokenGroups, now.Add(s.cfg.DevTokenTTL), err
		}
	}
	mux.Handle("GET /dev/token", web.DevTokenHandler(mint))
	mux.Handle("GET /", web.Handler())
	return mux
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		http.Error(w, "edge is draining", http.StatusServiceUnavailable)
		return
	}
	opts := &websocket.AcceptOptions{Subprotocols: []string{Subprotocol}}
	for _, o := range s.cfg.AllowedOrigins {
		if o == "*" {
			opts.InsecureSkipVerify = true
		}
	}
	if !opts.InsecureSkipVerify {
		opts.OriginPatterns = s.cfg.AllowedOrigins
	}
	ws, err := websocket.Accept(w, r, opts)
	if err != nil {
		return // Accept wrote the HTTP error
	}
	if ws.Subprotocol() != Subprotocol {
		_ = ws.Close(websocket.StatusProtocolError, "subprotocol "+Subprotocol+" required")
		return
	}
	s.conns.Add(1)
	defer s.conns.Done()
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{
		srv:     s,
		ws:      ws,
		session: newSessionID(),
		ctx:     ctx,
		cancel:  cancel,
		subs:    make(map[string]struct{}),
		notify:  make(chan struct{}, 1),
	}
	c.log = s.log.With("session", c.session)
	s.m.conns.Inc()
	defer func() {
		cancel()
		s.unregister(c)
		c.detachAll()
		_ = ws.CloseNow()
		s.m.conns.Dec()
	}()
	c.serve()
}

func newSessionID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return "s" + base32.HexEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])
}

func (s *Server) register(c *conn) {
	s.mu.Lock()
	s.sessions[c.session] = c
	s.mu.Unlock()
}

func (s *Server) unregister(c *conn) {
	s.mu.Lock()
	delete(s.sessions, c.session)
	s.mu.Unlock()
}

// produceEvent writes one request into the group log, keyed and
// partitioned by group. onErr runs if the write fails.
func (s *Server) produceEvent(ctx context.Context, group, session, user, reqID string, ev *pb.GroupEvent, onErr func(error)) error {
	ev.Version = schemas.Version
	ev.Group = group
	ev.Edge = s.cfg.ID
	ev.Incarnation = s.incarnation
	ev.Session = session
	ev.User = user
	ev.RequestId = reqID
	ev.TsMs = time.Now().UnixMilli()
	v, err := proto.Marshal(ev)
	if err != nil {
		return fmt.Errorf("marshal group event: %w", err)
	}
	r := &kgo.Record{
		Topic:     s.cfg.Layout.GroupTopic,
		Partition: pipeline.PartitionFor(group, s.cfg.Layout.GroupPartitions),
		Key:       []byte(group),
		Value:     v,
	}
	// The record outlives the connection's context: a request read
	// before the client left is still written.
	s.prod.Produce(context.WithoutCancel(ctx), r, func(_ *kgo.Record, err error) {
		if err != nil {
			onErr(err)
		}
	})
	return nil
}

// Run serves until ctx is done. Teardown order: stop accepting, close every
// client (their handlers write their detaches), wait for the handlers,
// flush the producer, then close the Kafka clients.
func (s *Server) Run(ctx context.Context) error {
	defer s.cons.Close()
	defer s.prod.Close()
	if err := pipeline.WaitTopics(ctx, kadm.NewClient(s.prod), s.cfg.Layout, func(err error) {
		s.log.Warn("waiting for Kafka topics", "err", err)
	}); err != nil {
		s.ln.Close()
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("edge %s: %w", s.cfg.ID, err)
	}
	s.cons.AddConsumePartitions(map[string]map[int32]kgo.Offset{
		s.cfg.Layout.DeliveryTopic: {s.slot: kgo.NewOffset().AtEnd()},
	})
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.consume(gctx) })
	g.Go(func() error { s.heartbeat(gctx); return nil })
	g.Go(func() error {
		if err := hs.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		s.draining.Store(true)
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
		// Drain: every client is told to reconnect elsewhere (4000)
		// after what is queued for it has been written.
		s.closeAll(CloseGoingAway, "going_away: edge draining; reconnect to another edge and resubscribe with since")
		s.conns.Wait()
		if err := s.prod.Flush(sctx); err != nil {
			s.log.Warn("flush on shutdown", "err", err)
		}
		return nil
	})
	err := g.Wait()
	s.log.Info("edge stopped")
	return err
}

func (s *Server) closeAll(code websocket.StatusCode, reason string) {
	s.mu.RLock()
	cs := make([]*conn, 0, len(s.sessions))
	for _, c := range s.sessions {
		cs = append(cs, c)
	}
	s.mu.RUnlock()
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func() { defer wg.Done(); c.flushThenClose(code, reason) }()
	}
	wg.Wait()
}

// heartbeat writes an EdgeHeartbeat into every partition of the group log.
// Writes are asynchronous so a Kafka outage never blocks shutdown; a round
// still in flight skips the next tick.
func (s *Server) heartbeat(ctx context.Context) {
	t := time.NewTicker(s.cfg.HeartbeatInterval)
	defer t.Stop()
	var inflight atomic.Bool
	for {
		if inflight.CompareAndSwap(false, true) {
			s.beat(ctx, &inflight)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Server) beat(ctx context.Context, inflight *atomic.Bool) {
	v, _ := proto.Marshal(&pb.GroupEvent{
		Version:     schemas.Version,
		Edge:        s.cfg.ID,
		Incarnation: s.incarnation,
		TsMs:        time.Now().UnixMilli(),
		Kind: &pb.GroupEvent_Heartbeat{Heartbeat: &pb.EdgeHeartbeat{
			IntervalMs: s.cfg.HeartbeatInterval.Milliseconds(), Slot: s.slot}},
	})
	n := int(s.cfg.Layout.GroupPartitions)
	var (
		mu     sync.Mutex
		left   = n
		failed error
	)
	for p := 0; p < n; p++ {
		r := &kgo.Record{Topic: s.cfg.Layout.GroupTopic, Partition: int32(p), Value: v}
		s.prod.Produce(ctx, r, func(_ *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil && failed == nil {
				failed = err
			}
			if left--; left > 0 {
				return
			}
			if failed == nil {
				s.lastHeartbeat.Store(time.Now().UnixNano())
			} else if ctx.Err() == nil {
				s.log.Warn("heartbeat failed", "err", failed)
			}
			inflight.Store(false)
		})
	}
}

// consume reads this edge's delivery slot and writes each event to its
// local recipients, encoding it once.
func (s *Server) consume(ctx context.Context) error {
	s.consuming.Store(true)
	defer s.consuming.Store(false)
	touched := make(map[*conn]struct{})
	for {
		fs := s.cons.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			s.log.Warn("delivery fetch error", "topic", t, "partition", p, "err", err)
		})
		// Wake each writer once per fetch: everything a connection got
		// from this fetch goes out as one WebSocket message.
		fs.EachRecord(func(r *kgo.Record) { s.route(r, touched) })
		for c := range touched {
			c.wake()
		}
		clear(touched)
	}
}

func (s *Server) route(r *kgo.Record, touched map[*conn]struct{}) {
	if string(r.Key) != s.cfg.ID {
		return // another edge sharing the slot
	}
	var d pb.Delivery
	if err := proto.Unmarshal(r.Value, &d); err != nil {
		s.m.undecoded.WithLabelValues(r.Topic).Inc()
		s.log.Warn("skipping undecodable delivery", "partition", r.Partition, "offset", r.Offset, "err", err)
		return
	}
	if d.GetEdge() != s.cfg.ID {
		return
	}
	s.m.deliveries.Inc()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if e := d.GetEphemeral(); e != nil && len(d.GetSessions()) > 0 {
		if sig := e.GetSignal(); sig != nil && time.Now().UnixMilli() > sig.GetTsMs()+sig.GetTtlMs() {
			// Late (a lagging or failed-over sequencer): a stale offer
			// must never ring. Clocks of edges are assumed in sync to
			// well under the TTL.
			s.m.signalsExpired.Inc()
		} else if frame := encodeEphemeral(d.GetGroup(), e); frame != nil {
			for _, id := range d.GetSessions() {
				if c := s.sessions[id]; c != nil && c.push(frame) {
					touched[c] = struct{}{}
				}
			}
		}
	}
	if ev := d.GetEvent(); ev != nil && len(d.GetSessions()) > 0 {
		frame := encodeEvent(ev)
		if frame != nil {
			for _, id := range d.GetSessions() {
				if c := s.sessions[id]; c != nil && c.push(frame) {
					touched[c] = struct{}{}
				}
			}
		}
	}
	for _, rep := range d.GetReplies() {
		c := s.sessions[rep.GetSession()]
		if c == nil {
			continue
		}
		if det := rep.GetDetached(); det != nil {
			// The sequencer expired this edge's attachments while it was
			// cut off from Kafka: the session no longer gets the group's
			// events. Closing with going_away makes the client resubscribe
			// with since, after what is queued (all still valid) is sent.
			s.m.detached.Inc()
			s.log.Info("session detached by the sequencer; closing with going_away", "session", rep.GetSession(), "group", det.GetGroup(), "reason", det.GetReason())
			go c.flushThenClose(CloseGoingAway, "going_away: resubscribe to "+det.GetGroup()+" with since")
			continue
		}
		if c.push(encodeReply(rep)) {
			touched[c] = struct{}{}
		}
	}
}
