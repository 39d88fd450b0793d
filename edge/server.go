package edge

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path"
	"runtime"
	"strconv"
	"strings"
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
	// Secret verifies HS256 tokens; empty turns HS256 off (then
	// PublicKeyFile or JWKSURL is needed). See VerifierConfig for these
	// fields.
	Secret           []byte
	PublicKeyFile    string
	JWKSURL          string
	JWKSRefresh      time.Duration
	TokenIssuer      string
	TokenAudience    string
	MaxTokenLifetime time.Duration
	// JWKSClient fetches JWKSURL (default: 5 s timeout).
	JWKSClient *http.Client
	// AllowedOrigins are host patterns accepted in the Origin header of
	// the upgrade, beyond the edge's own host; "*" allows any (refused
	// by ValidateProduction). A request without Origin is not from a
	// browser and passes; it still needs a valid hello.
	AllowedOrigins []string
	// TrustedProxies are the CIDRs of proxies whose X-Forwarded-For
	// names the client for the per-IP limits; empty trusts none.
	TrustedProxies []string
	// IPLimitsExempt are client addresses (CIDRs) the per-IP limits do
	// not apply to. The default is loopback: a local tool, or a local
	// proxy not listed in TrustedProxies, where one address stands for
	// every client and a per-IP limit would throttle them all together.
	IPLimitsExempt []string

	// Limits (limits.go); 0 turns one off. Rates are per second, with
	// bursts of two seconds' worth.
	ConnFramesPerSec int // frames per connection
	ConnBytesPerSec  int // bytes of WebSocket messages per connection
	UserFramesPerSec int // frames per user, all their sessions on this edge
	UserBytesPerSec  int
	// MaxRateLimited refusals without a second free of them close the
	// connection with 4408.
	MaxRateLimited     int
	MaxSessionsPerUser int // on this edge
	MaxSubscriptions   int // per session: groups and watched users
	MaxConnsPerIP      int // open connections per client address
	ConnRatePerIP      int // new connections per second per client address
	// IdleTimeout closes (4408) a connection from which nothing came (no
	// frame, no WebSocket ping) for this long; 0 never.
	IdleTimeout time.Duration
	// TLSCert and TLSKey (PEM files), both or neither, make the edge serve
	// HTTPS and wss:// itself (TLS 1.2+); the files are read again when
	// they change, so a renewed certificate needs no restart.
	TLSCert, TLSKey string
	// MaxFrameBytes limits one client frame (too_large beyond it).
	MaxFrameBytes int
	// MaxBodyBytes limits a send's body, as compact JSON (too_large with
	// reason body beyond it); 0: only the frame limit.
	MaxBodyBytes int
	// Reach says whom a user may signal and whose presence they may see:
	// ReachSharedGroup (the default; also "") users sharing a group with
	// them, checked by the sequencer against its membership index, or
	// ReachAny, any user.
	Reach string
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
		MaxBodyBytes:      32 << 10,
		Reach:             ReachSharedGroup,
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

		JWKSRefresh:        DefaultJWKSRefresh,
		MaxTokenLifetime:   24 * time.Hour,
		ConnFramesPerSec:   250,
		ConnBytesPerSec:    4 << 20,
		UserFramesPerSec:   500,
		UserBytesPerSec:    8 << 20,
		MaxRateLimited:     100,
		MaxSessionsPerUser: 32,
		MaxSubscriptions:   1000,
		MaxConnsPerIP:      1000,
		ConnRatePerIP:      20,
		IPLimitsExempt:     []string{"127.0.0.0/8", "::1"},
		IdleTimeout:        5 * time.Minute,
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
	case len(c.Secret) == 0 && c.PublicKeyFile == "" && c.JWKSURL == "":
		return errors.New("auth: no token keys: set auth.secret, auth.public_keys_file or auth.jwks_url")
	case c.JWKSRefresh < 0 || c.MaxTokenLifetime < 0 || c.IdleTimeout < 0:
		return errors.New("auth.jwks_refresh, auth.max_token_lifetime and edge.idle_timeout must not be negative")
	case c.ConnFramesPerSec < 0 || c.ConnBytesPerSec < 0 || c.UserFramesPerSec < 0 || c.UserBytesPerSec < 0 ||
		c.MaxRateLimited < 0 || c.MaxSessionsPerUser < 0 || c.MaxSubscriptions < 0 || c.MaxConnsPerIP < 0 || c.ConnRatePerIP < 0:
		return errors.New("edge limits must not be negative (0 turns one off)")
	case c.MaxFrameBytes < 1024:
		return fmt.Errorf("edge.max_frame_bytes %d: must be at least 1024", c.MaxFrameBytes)
	case c.MaxBodyBytes < 0:
		return fmt.Errorf("edge.max_body_bytes %d: must not be negative (0: only edge.max_frame_bytes)", c.MaxBodyBytes)
	case c.Reach != "" && c.Reach != ReachSharedGroup && c.Reach != ReachAny:
		return fmt.Errorf("edge.reach %q: want %s or %s", c.Reach, ReachSharedGroup, ReachAny)
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
	for _, p := range c.AllowedOrigins {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("edge.allowed_origins pattern %q: %w", p, err)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("edge.tls_cert and edge.tls_key: set both or neither")
	}
	if _, err := parsePrefixes(c.TrustedProxies); err != nil {
		return fmt.Errorf("edge.trusted_proxies: %w (want CIDRs such as 10.0.0.0/8 or addresses)", err)
	}
	if _, err := parsePrefixes(c.IPLimitsExempt); err != nil {
		return fmt.Errorf("edge.ip_limits_exempt: %w (want CIDRs such as 127.0.0.0/8 or addresses)", err)
	}
	if c.DevTokens {
		if len(c.Secret) == 0 {
			return errors.New("edge dev tokens: need auth.secret to sign them")
		}
		if c.DevTokenTTL <= 0 {
			return fmt.Errorf("edge dev token ttl %s: must be positive when dev tokens are on", c.DevTokenTTL)
		}
		if c.MaxTokenLifetime > 0 && c.DevTokenTTL > c.MaxTokenLifetime {
			return fmt.Errorf("edge dev token ttl %s: over auth.max_token_lifetime %s, its tokens would be refused", c.DevTokenTTL, c.MaxTokenLifetime)
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

// ValidateProduction reports what only `causeway dev` may do: an HS256
// secret shorter than MinSecretBytes, any origin ("*"), minting tokens for
// anyone (DevTokens), or fetching keys over plain HTTP. `causeway edge`
// refuses to start on it.
func (c Config) ValidateProduction() error {
	if err := c.Validate(); err != nil {
		return err
	}
	switch {
	case len(c.Secret) > 0 && len(c.Secret) < MinSecretBytes:
		return fmt.Errorf("auth.secret has %d bytes: want at least %d random bytes outside causeway dev (e.g. head -c 32 /dev/urandom | base64)", len(c.Secret), MinSecretBytes)
	case c.DevTokens:
		return errors.New("dev tokens (/dev/token) are only for causeway dev")
	case c.JWKSURL != "" && !strings.HasPrefix(strings.ToLower(c.JWKSURL), "https://"):
		return fmt.Errorf("auth.jwks_url %q: want https:// outside causeway dev", c.JWKSURL)
	}
	for _, p := range c.AllowedOrigins {
		if p == "*" {
			return errors.New("edge.allowed_origins: \"*\" (any site may open WebSockets with its visitors' tokens) is only for causeway dev; list the origins' hosts")
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
	// Refusals, by bounded reasons (never user or group IDs).
	authFailures *prometheus.CounterVec
	upgrades     *prometheus.CounterVec
	limited      *prometheus.CounterVec
	closes       *prometheus.CounterVec
	// Latencies and lag an operator watches.
	produce prometheus.Histogram
	e2e     prometheus.Histogram
	lag     *prometheus.GaugeVec
}

var knownFrames = map[string]bool{"hello": true, "join": true, "leave": true, "subscribe": true, "unsubscribe": true,
	"send": true, "read": true, "typing": true, "signal": true, "presence": true, "ping": true, "refresh": true,
	"invalid": true}

// frameIn counts a client frame; labels stay bounded.
func (m *metrics) frameIn(typ string) {
	if !knownFrames[typ] {
		typ = "unknown"
	}
	m.framesIn.WithLabelValues(typ).Inc()
}

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		produce: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "causeway_edge_produce_seconds", Help: "Time for Kafka to acknowledge a client request written to the group log.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		e2e: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "causeway_edge_delivery_latency_seconds", Help: "From the sender's edge receiving a timeline event to this edge queueing it for its recipients.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "causeway_edge_delivery_lag_records", Help: "Delivery records behind the high watermark, per partition (at the last fetch)."}, []string{"partition"}),
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
	m.authFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "causeway_edge_auth_failures_total", Help: "Tokens refused (hello and refresh), by reason."}, []string{"reason"})
	m.upgrades = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "causeway_edge_upgrades_refused_total", Help: "WebSocket upgrades refused before the handshake, by reason."}, []string{"reason"})
	m.limited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "causeway_edge_limited_total", Help: "Frames, messages, hellos and subscriptions refused by a limit, by limit."}, []string{"limit"})
	m.closes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "causeway_edge_closes_total", Help: "Connections the edge closed, by close code."}, []string{"code"})
	// Every label value exists from the start, so a rate over it is 0,
	// not absent.
	for _, r := range authReasons {
		m.authFailures.WithLabelValues(r)
	}
	for _, r := range refuseReasons {
		m.upgrades.WithLabelValues(r)
	}
	for _, r := range limitReasons {
		m.limited.WithLabelValues(r)
	}
	for _, c := range []websocket.StatusCode{CloseGoingAway, CloseProtocol, CloseUnauthorized, ClosePolicy, CloseSlowConsumer} {
		m.closes.WithLabelValues(strconv.Itoa(int(c)))
	}
	if r != nil {
		r.MustRegister(m.produce, m.e2e, m.lag)
		r.MustRegister(m.conns, m.framesIn, m.framesOut, m.errors, m.slow, m.detached, m.signalsExpired, m.deliveries, m.undecoded,
			m.authFailures, m.upgrades, m.limited, m.closes)
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

	users   userTable
	ips     ipTable
	trusted []netip.Prefix // edge.trusted_proxies
	exempt  []netip.Prefix // edge.ip_limits_exempt
	tls     *tls.Config    // nil: plain HTTP

	conns sync.WaitGroup // connection handlers
	// writerLinger is the writers' idle check period (the const; tests of
	// the writer's end shorten it).
	writerLinger time.Duration

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
	log := cfg.Logger.With("role", "edge", "edge", cfg.ID)
	v, err := NewVerifierFrom(VerifierConfig{
		Secret:        cfg.Secret,
		PublicKeyFile: cfg.PublicKeyFile,
		JWKSURL:       cfg.JWKSURL,
		JWKSRefresh:   cfg.JWKSRefresh,
		Issuer:        cfg.TokenIssuer,
		Audience:      cfg.TokenAudience,
		MaxLifetime:   cfg.MaxTokenLifetime,
		HTTPClient:    cfg.JWKSClient,
		Logger:        log,
	})
	if err != nil {
		return nil, err
	}
	trusted, _ := parsePrefixes(cfg.TrustedProxies) // checked by Validate
	exempt, _ := parsePrefixes(cfg.IPLimitsExempt)
	s := &Server{
		cfg:          cfg,
		log:          log,
		m:            newMetrics(cfg.Registry),
		writerLinger: writerLinger,
		verifier:     v,
		slot:         pipeline.PartitionFor(cfg.ID, cfg.Layout.DeliveryPartitions),
		incarnation:  newSessionID()[1:],
		sessions:     make(map[string]*conn),
		users:        userTable{users: make(map[string]*userState)},
		ips:          ipTable{maxConns: cfg.MaxConnsPerIP, perSec: cfg.ConnRatePerIP, ips: make(map[netip.Prefix]*ipState)},
		trusted:      trusted,
		exempt:       exempt,
	}
	if cfg.TLSCert != "" {
		cr, err := newCertReloader(cfg.TLSCert, cfg.TLSKey, log)
		if err != nil {
			return nil, err
		}
		s.tls = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: cr.get}
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
	var devMint web.MintFunc
	if s.cfg.DevTokens {
		devMint = func(user string) (string, []string, time.Time, error) {
			now := time.Now()
			tok, err := mint(s.cfg.Secret, user, s.cfg.DevTokenGroups, s.cfg.DevTokenTTL, now, s.cfg.TokenIssuer, s.cfg.TokenAudience)
			return tok, s.cfg.DevTokenGroups, now.Add(s.cfg.DevTokenTTL), err
		}
	}
	mux.Handle("GET /dev/token", web.DevTokenHandler(devMint))
	mux.Handle("GET /", web.Handler())
	return mux
}

// serveWS admits an upgrade, in order of cost: draining, Origin (a
// browser on a foreign site: cross-site WebSocket hijacking), then the
// client address's open connections and connection rate. Refusals are
// plain HTTP errors before any WebSocket work, and counted.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		s.m.upgrades.WithLabelValues(refuseDraining).Inc()
		http.Error(w, "edge is draining", http.StatusServiceUnavailable)
		return
	}
	if !originAllowed(r, s.cfg.AllowedOrigins) {
		s.m.upgrades.WithLabelValues(refuseOrigin).Inc()
		s.log.Debug("upgrade refused: origin not allowed", "origin", r.Header.Get("Origin"), "host", r.Host)
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	release := func() {}
	if addr := clientAddr(r, s.trusted); !inPrefixes(addr, s.exempt) {
		ip := ipKey(addr)
		if why, ok := s.ips.admit(ip, time.Now()); !ok {
			s.m.upgrades.WithLabelValues(why).Inc()
			w.Header().Set("Retry-After", "1")
			http.Error(w, "too many connections from this address", http.StatusTooManyRequests)
			return
		}
		release = func() { s.ips.release(ip) }
	}
	handedOff := false
	defer func() {
		if !handedOff {
			release()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{
		srv:     s,
		session: newSessionID(),
		ctx:     ctx,
		cancel:  cancel,
		subs:    make(map[string]struct{}),
		notify:  make(chan struct{}, 1),
		frames:  newBucket(s.cfg.ConnFramesPerSec, 1),
		bytes:   newBucket(s.cfg.ConnBytesPerSec, s.cfg.MaxMessageBytes),
	}
	c.touch()
	opts := &websocket.AcceptOptions{
		Subprotocols: []string{Subprotocol},
		// A client's WebSocket ping shows it is there (edge.idle_timeout).
		OnPingReceived: func(context.Context, []byte) bool { c.touch(); return true },
	}
	for _, o := range s.cfg.AllowedOrigins {
		if o == "*" {
			opts.InsecureSkipVerify = true
		}
	}
	if !opts.InsecureSkipVerify {
		opts.OriginPatterns = s.cfg.AllowedOrigins
	}
	ws, err := websocket.Accept(hijackTap{ResponseWriter: w, c: c}, r, opts)
	if err != nil {
		cancel()
		return // Accept wrote the HTTP error
	}
	c.ws = ws
	if ws.Subprotocol() != Subprotocol {
		s.m.upgrades.WithLabelValues(refuseSubprotocol).Inc()
		cancel()
		_ = ws.Close(websocket.StatusProtocolError, "subprotocol "+Subprotocol+" required")
		return
	}
	if !s.track() {
		cancel()
		_ = ws.Close(CloseGoingAway, "going_away: edge draining; reconnect to another edge")
		return
	}
	c.log = connLogger(s.log, "session", c.session)
	s.m.conns.Inc()
	// The connection outlives this handler: net/http's goroutine, with
	// the upgrade request and its buffers, ends here, and the reader runs
	// on a fresh, shallow stack (issue 8: memory per idle connection).
	// s.conns (the drain) waits for it.
	handedOff = true
	go func() {
		defer s.conns.Done()
		defer release()
		defer func() {
			cancel()
			s.unregister(c)
			c.detachAll()
			if c.user != nil {
				s.users.release(c.id.User)
			}
			_ = ws.CloseNow()
			s.m.conns.Dec()
		}()
		c.serve()
	}()
}

// track counts a connection handler for the drain to wait for, unless
// the drain has begun: under mu, so no Add races the drain's Wait.
func (s *Server) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Load() {
		return false
	}
	s.conns.Add(1)
	return true
}

// verify checks a token and counts a refusal by its reason.
func (s *Server) verify(token string) (Identity, error) {
	id, err := s.verifier.Verify(token)
	if err != nil {
		reason := authMalformed
		var te *TokenError
		if errors.As(err, &te) {
			reason = te.Reason
		}
		s.m.authFailures.WithLabelValues(reason).Inc()
	}
	return id, err
}

// newUserState is a user's entry in the users table: buckets shared by
// all their sessions on this edge.
func (s *Server) newUserState() *userState {
	return &userState{
		frames: newBucket(s.cfg.UserFramesPerSec, 1),
		bytes:  newBucket(s.cfg.UserBytesPerSec, s.cfg.MaxMessageBytes),
	}
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
	began := time.Now()
	s.prod.Produce(context.WithoutCancel(ctx), r, func(_ *kgo.Record, err error) {
		if err != nil {
			onErr(err)
			return
		}
		s.m.produce.Observe(time.Since(began).Seconds())
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
		serve := func() error { return hs.Serve(s.ln) }
		if s.tls != nil {
			hs.TLSConfig = s.tls
			serve = func() error { return hs.ServeTLS(s.ln, "", "") }
		}
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		s.mu.Lock()
		s.draining.Store(true) // no track() succeeds after this
		s.mu.Unlock()
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
	var fl flusher
	for {
		fs := s.cons.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			s.log.Warn("delivery fetch error", "topic", t, "partition", p, "err", err)
		})
		// One write per connection per fetch: everything a connection got
		// from this fetch goes out as one WebSocket message.
		fs.EachRecord(func(r *kgo.Record) { s.route(r, touched) })
		fs.EachPartition(func(fp kgo.FetchTopicPartition) {
			if n := len(fp.Records); n > 0 {
				s.m.lag.WithLabelValues(strconv.Itoa(int(fp.Partition))).Set(float64(max(0, fp.HighWatermark-fp.Records[n-1].Offset-1)))
			}
		})
		fl.flush(touched)
		clear(touched)
	}
}

// flusher writes a fetch's fan-out: each connection's queue from the
// consumer's goroutine if its socket takes it at once (conn.writeNow),
// else by waking the connection's writer. Owned by consume; a large
// fan-out is split across up to GOMAXPROCS goroutines it waits for.
type flusher struct {
	conns   []*conn
	scratch [][]byte // one frame buffer per part
	procs   int      // most parts; 0: GOMAXPROCS (tests set it)
}

// flushPart is the least number of connections worth a goroutine.
const flushPart = 256

func (f *flusher) flush(touched map[*conn]struct{}) {
	for c := range touched {
		f.conns = append(f.conns, c)
	}
	defer func() {
		clear(f.conns)
		f.conns = f.conns[:0]
	}()
	procs := f.procs
	if procs == 0 {
		procs = runtime.GOMAXPROCS(0)
	}
	parts := max(1, min(procs, len(f.conns)/flushPart))
	for len(f.scratch) < parts {
		f.scratch = append(f.scratch, nil)
	}
	per := (len(f.conns) + parts - 1) / parts
	var wg sync.WaitGroup
	for i := 1; i < parts; i++ {
		wg.Go(func() { f.scratch[i] = writeAll(f.conns[i*per:min(len(f.conns), (i+1)*per)], f.scratch[i]) })
	}
	f.scratch[0] = writeAll(f.conns[:min(len(f.conns), per)], f.scratch[0])
	wg.Wait()
}

func writeAll(conns []*conn, scratch []byte) []byte {
	for i, c := range conns {
		var done bool
		if scratch, done = c.writeNow(scratch); !done {
			c.wake()
		}
		// Let other goroutines in between writes: the Kafka clients'
		// round trips of the next transaction wait behind a long fan-out.
		if i%16 == 15 {
			runtime.Gosched()
		}
	}
	if cap(scratch) > 64<<10 {
		return nil
	}
	return scratch
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
		// From the sender's edge receiving it to this edge queueing it for
		// its recipients (edges' clocks in sync).
		s.m.e2e.Observe(max(0, float64(time.Now().UnixMilli()-ev.GetTsMs())/1000))
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
		if e := rep.GetError(); e != nil {
			// Refusals decided by the sequencer (not_member, ...) are
			// counted with the edge's own.
			s.m.errors.WithLabelValues(knownCode(e.GetCode())).Inc()
		}
		if c.push(encodeReply(rep)) {
			touched[c] = struct{}{}
		}
	}
}
