// Package config is the one place that reads configuration: a YAML file,
// CAUSEWAY_* environment variables and command-line flags, with precedence
// flag > env > file > default, through viper. It turns them into plain
// typed structs; no other package imports viper.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cast"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// DevSecret is the default token secret. It is public: only for dev.
const DevSecret = "causeway-dev-secret-not-for-production!"

// Defaults lists every key with its default; the README's configuration
// reference is this table.
var Defaults = map[string]any{
	"kafka.brokers":                 "127.0.0.1:9092",
	"kafka.client_id":               "causeway",
	"topics.groups":                 "causeway.groups",
	"topics.state":                  "causeway.sequencer-state",
	"topics.rollup_state":           "causeway.rollup-state",
	"topics.deliveries":             "causeway.deliveries",
	"topics.group_partitions":       8,
	"topics.delivery_partitions":    16,
	"topics.replication_factor":     -1,
	"auth.secret":                   DevSecret,
	"auth.public_keys_file":         "",
	"auth.jwks_url":                 "",
	"auth.jwks_refresh":             "5m",
	"auth.issuer":                   "",
	"auth.audience":                 "",
	"auth.max_token_lifetime":       "24h",
	"edge.id":                       "",
	"edge.http_addr":                "127.0.0.1:8080",
	"edge.allowed_origins":          "",
	"edge.max_frame_bytes":          64 << 10,
	"edge.max_body_bytes":           32 << 10,
	"edge.reach":                    "shared_group",
	"edge.max_message_bytes":        256 << 10,
	"edge.queue_frames":             4096,
	"edge.queue_bytes":              4 << 20,
	"edge.slow_consumer_after":      "5s",
	"edge.signal_ttl":               "30s",
	"edge.max_bad_frames":           20,
	"edge.hello_timeout":            "10s",
	"edge.write_timeout":            "10s",
	"edge.ping_interval":            "20s",
	"edge.pong_timeout":             "10s",
	"edge.heartbeat_interval":       "3s",
	"edge.produce_timeout":          "10s",
	"edge.trusted_proxies":          "",
	"edge.conn_frames_per_sec":      250,
	"edge.conn_bytes_per_sec":       4 << 20,
	"edge.user_frames_per_sec":      500,
	"edge.user_bytes_per_sec":       8 << 20,
	"edge.max_rate_limited":         100,
	"edge.max_sessions_per_user":    32,
	"edge.max_subscriptions":        1000,
	"edge.max_conns_per_ip":         1000,
	"edge.conn_rate_per_ip":         20,
	"edge.ip_limits_exempt":         "127.0.0.0/8,::1",
	"edge.idle_timeout":             "5m",
	"edge.tls_cert":                 "",
	"edge.tls_key":                  "",
	"sequencer.group_id":            "causeway-sequencer",
	"sequencer.instance_id":         "",
	"sequencer.dedup_window":        1000,
	"sequencer.history_count":       1000,
	"sequencer.history_age":         "24h",
	"sequencer.history_bytes":       1 << 20,
	"sequencer.edge_timeout":        "15s",
	"sequencer.signal_buffer":       256,
	"sequencer.call_idle":           "1h",
	"sequencer.presence_window":     "1s",
	"sequencer.presence_max_group":  100,
	"sequencer.typing_window":       "500ms",
	"sequencer.typing_expiry":       "5s",
	"sequencer.max_batch":           2000,
	"sequencer.linger":              "2ms",
	"admin.pprof":                   false,
	"rollup.group_id":               "causeway-rollup",
	"rollup.instance_id":            "",
	"rollup.window":                 "500ms",
	"rollup.commit_interval":        "100ms",
	"rollup.max_messages":           1000,
	"rollup.counts_only_above":      100,
	"rollup.sender_only_above":      1000,
	"rollup.slow_factor":            4,
	"rollup.clickhouse":             true,
	"sequencer.session_timeout":     "6s",
	"sequencer.transaction_timeout": "10s",
	"broker.listen":                 "127.0.0.1:9092",
	"broker.data_dir":               "",
	"broker.sync":                   false,
	"dev.edges":                     2,
	"dev.http_addr":                 "127.0.0.1:8080",
	"dev.data_dir":                  ".causeway/dev",
	"log.level":                     "info",
	"log.format":                    "text",

	// `causeway topics create` makes production layouts: 3 copies unless
	// told otherwise, where a role creating a missing topic takes the
	// broker default (dev's single broker holds only one).
	"topics.create_replication_factor": 3,

	// ClickHouse, for the rollup's analytics and `causeway migrate`. The
	// default address is the project-local server of scripts/clickhouse.sh.
	"clickhouse.addr":     "127.0.0.1:19000",
	"clickhouse.database": "causeway",
	"clickhouse.username": "default",
	"clickhouse.password": "",
	"clickhouse.tls":      false,
	// PEM file of the CAs that sign the server's certificate; empty: the
	// system's roots.
	"clickhouse.tls_ca_file": "",

	// Joins over these are refused (0: no limit); the sequencer counts
	// a user's groups in their personal stream.
	"sequencer.max_groups_per_user":   1000,
	"sequencer.max_members_per_group": 10000,

	// SASL and TLS to Kafka, for every role (pipeline.KafkaConfig).
	"kafka.sasl.mechanism":  "none",
	"kafka.sasl.username":   "",
	"kafka.sasl.password":   "",
	"kafka.tls.enabled":     false,
	"kafka.tls.ca_file":     "",
	"kafka.tls.cert_file":   "",
	"kafka.tls.key_file":    "",
	"kafka.tls.server_name": "",
}

// Config is every setting, typed.
type Config struct {
	Kafka      Kafka
	Topics     Topics
	Auth       Auth
	Edge       Edge
	Sequencer  Sequencer
	Rollup     Rollup
	Admin      Admin
	Broker     Broker
	Dev        Dev
	Log        Log
	ClickHouse ClickHouse
}

type Kafka struct {
	Brokers  []string
	ClientID string
	// SASL: mechanism none, plain, scram-sha-256 or scram-sha-512.
	SASLMechanism, SASLUsername, SASLPassword string
	// TLS to the brokers; the files are PEM.
	TLS                                bool
	TLSCAFile, TLSCertFile, TLSKeyFile string
	TLSServerName                      string
}

type Topics struct {
	Groups, State, Deliveries string
	RollupState               string
	GroupPartitions           int
	DeliveryPartitions        int
	ReplicationFactor         int
	CreateReplicationFactor   int
}

type Auth struct {
	Secret           string
	PublicKeysFile   string
	JWKSURL          string
	JWKSRefresh      time.Duration
	Issuer, Audience string
	MaxTokenLifetime time.Duration
}

type Edge struct {
	ID                                                               string
	HTTPAddr                                                         string
	AllowedOrigins                                                   []string
	MaxFrameBytes, MaxMessageBytes, QueueFrames, QueueBytes          int
	MaxBodyBytes                                                     int
	Reach                                                            string
	MaxBadFrames                                                     int
	HelloTimeout, WriteTimeout, PingInterval, PongTimeout, Heartbeat time.Duration
	ProduceTimeout, SlowConsumerAfter, SignalTTL                     time.Duration

	TrustedProxies, IPLimitsExempt     []string
	ConnFramesPerSec, ConnBytesPerSec  int
	UserFramesPerSec, UserBytesPerSec  int
	MaxRateLimited, MaxSessionsPerUser int
	MaxSubscriptions                   int
	MaxConnsPerIP, ConnRatePerIP       int
	IdleTimeout                        time.Duration
	TLSCert, TLSKey                    string
}

type Sequencer struct {
	GroupID, InstanceID                string
	DedupWindow, MaxBatch              int
	HistoryCount, HistoryBytes         int
	HistoryAge, EdgeTimeout            time.Duration
	SessionTimeout, TransactionTimeout time.Duration
	SignalBuffer, PresenceMaxGroup     int
	CallIdle, PresenceWindow           time.Duration
	TypingWindow, TypingExpiry         time.Duration
	MaxGroupsPerUser                   int
	MaxMembersPerGroup                 int
	Linger                             time.Duration
}

type Rollup struct {
	GroupID, InstanceID                           string
	Window, CommitInterval                        time.Duration
	MaxMessages, CountsOnlyAbove, SenderOnlyAbove int
	SlowFactor                                    int
	// ClickHouse: write analytics with the clickhouse.* settings.
	ClickHouse bool
}

// Admin is the operators' side: pprof on the roles' metrics address.
type Admin struct{ Pprof bool }

type Broker struct {
	Listen, DataDir string
	Sync            bool
}

type Dev struct {
	Edges    int
	HTTPAddr string
	DataDir  string
}

type Log struct{ Level, Format string }

// ClickHouse is where the rollup writes analytics (consumers/rollup/chsink).
type ClickHouse struct {
	Addr, Database     string
	Username, Password string
	TLS                bool
	TLSCAFile          string
}

// Loader reads configuration for one command.
type Loader struct {
	v *viper.Viper
}

// NewLoader sets up defaults and the CAUSEWAY_ environment.
func NewLoader() *Loader {
	v := viper.New()
	for k, d := range Defaults {
		v.SetDefault(k, d)
	}
	v.SetEnvPrefix("CAUSEWAY")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	return &Loader{v: v}
}

// BindFlag makes flag f set key (flags win over env and file).
func (l *Loader) BindFlag(key string, f *pflag.Flag) error {
	if _, ok := Defaults[key]; !ok {
		return fmt.Errorf("bind flag --%s: unknown key %s", f.Name, key)
	}
	return l.v.BindPFlag(key, f)
}

// Load reads the file (if any) and returns the typed, validated config.
func (l *Loader) Load(file string) (Config, error) {
	if file == "" {
		file = os.Getenv("CAUSEWAY_CONFIG")
	}
	if file != "" {
		l.v.SetConfigFile(file)
		if err := l.v.ReadInConfig(); err != nil {
			return Config{}, fmt.Errorf("read config file %s: %w", file, err)
		}
		var unknown []string
		for _, k := range l.v.AllKeys() {
			if _, ok := Defaults[k]; !ok {
				unknown = append(unknown, k)
			}
		}
		if len(unknown) > 0 {
			sort.Strings(unknown)
			return Config{}, fmt.Errorf("config file %s: unknown keys %s (see the configuration reference in README.md)", file, strings.Join(unknown, ", "))
		}
	}
	p := parser{v: l.v}
	c := Config{
		Kafka: Kafka{
			Brokers: p.list("kafka.brokers"), ClientID: p.str("kafka.client_id"),
			SASLMechanism: p.oneOf("kafka.sasl.mechanism", "none", "plain", "scram-sha-256", "scram-sha-512"),
			SASLUsername:  p.str("kafka.sasl.username"),
			SASLPassword:  p.secret("kafka.sasl.password"),
			TLS:           p.boolean("kafka.tls.enabled"),
			TLSCAFile:     p.str("kafka.tls.ca_file"), TLSCertFile: p.str("kafka.tls.cert_file"),
			TLSKeyFile: p.str("kafka.tls.key_file"), TLSServerName: p.str("kafka.tls.server_name"),
		},
		Topics: Topics{
			Groups: p.str("topics.groups"), State: p.str("topics.state"), Deliveries: p.str("topics.deliveries"),
			RollupState:        p.str("topics.rollup_state"),
			GroupPartitions:    p.intIn("topics.group_partitions", 1, 10000),
			DeliveryPartitions: p.intIn("topics.delivery_partitions", 1, 10000),
			ReplicationFactor:  p.intIn("topics.replication_factor", -1, 32767),

			CreateReplicationFactor: p.intIn("topics.create_replication_factor", -1, 32767),
		},
		Auth: Auth{
			Secret:           p.str("auth.secret"),
			PublicKeysFile:   p.str("auth.public_keys_file"),
			JWKSURL:          p.str("auth.jwks_url"),
			JWKSRefresh:      p.dur("auth.jwks_refresh"),
			Issuer:           p.str("auth.issuer"),
			Audience:         p.str("auth.audience"),
			MaxTokenLifetime: p.dur("auth.max_token_lifetime"),
		},
		Edge: Edge{
			ID: p.str("edge.id"), HTTPAddr: p.str("edge.http_addr"), AllowedOrigins: p.list("edge.allowed_origins"),
			MaxFrameBytes:     p.intIn("edge.max_frame_bytes", 1024, 16<<20),
			MaxBodyBytes:      p.intIn("edge.max_body_bytes", 0, 16<<20),
			Reach:             p.oneOf("edge.reach", "shared_group", "any"),
			MaxMessageBytes:   p.intIn("edge.max_message_bytes", 1024, 64<<20),
			QueueFrames:       p.intIn("edge.queue_frames", 16, 1<<20),
			QueueBytes:        p.intIn("edge.queue_bytes", 1024, 1<<30),
			MaxBadFrames:      p.intIn("edge.max_bad_frames", 1, 1<<20),
			HelloTimeout:      p.dur("edge.hello_timeout"),
			WriteTimeout:      p.dur("edge.write_timeout"),
			PingInterval:      p.dur("edge.ping_interval"),
			PongTimeout:       p.dur("edge.pong_timeout"),
			Heartbeat:         p.dur("edge.heartbeat_interval"),
			ProduceTimeout:    p.dur("edge.produce_timeout"),
			SlowConsumerAfter: p.dur("edge.slow_consumer_after"),
			SignalTTL:         p.dur("edge.signal_ttl"),

			// Limits: 0 turns one off.
			TrustedProxies:     p.list("edge.trusted_proxies"),
			IPLimitsExempt:     p.list("edge.ip_limits_exempt"),
			ConnFramesPerSec:   p.intIn("edge.conn_frames_per_sec", 0, 1_000_000),
			ConnBytesPerSec:    p.intIn("edge.conn_bytes_per_sec", 0, 1<<30),
			UserFramesPerSec:   p.intIn("edge.user_frames_per_sec", 0, 1_000_000),
			UserBytesPerSec:    p.intIn("edge.user_bytes_per_sec", 0, 1<<30),
			MaxRateLimited:     p.intIn("edge.max_rate_limited", 0, 1_000_000),
			MaxSessionsPerUser: p.intIn("edge.max_sessions_per_user", 0, 1_000_000),
			MaxSubscriptions:   p.intIn("edge.max_subscriptions", 0, 1_000_000),
			MaxConnsPerIP:      p.intIn("edge.max_conns_per_ip", 0, 10_000_000),
			ConnRatePerIP:      p.intIn("edge.conn_rate_per_ip", 0, 1_000_000),
			IdleTimeout:        p.durOrOff("edge.idle_timeout"),
			TLSCert:            p.str("edge.tls_cert"),
			TLSKey:             p.str("edge.tls_key"),
		},
		Sequencer: Sequencer{
			GroupID: p.str("sequencer.group_id"), InstanceID: p.str("sequencer.instance_id"),
			DedupWindow:        p.intIn("sequencer.dedup_window", 1, 1_000_000),
			HistoryCount:       p.intIn("sequencer.history_count", 0, 1_000_000),
			HistoryBytes:       p.intIn("sequencer.history_bytes", 0, 1<<30),
			HistoryAge:         p.dur("sequencer.history_age"),
			EdgeTimeout:        p.dur("sequencer.edge_timeout"),
			MaxBatch:           p.intIn("sequencer.max_batch", 1, 100_000),
			Linger:             p.durOrOffUpTo("sequencer.linger", time.Second),
			SessionTimeout:     p.dur("sequencer.session_timeout"),
			TransactionTimeout: p.dur("sequencer.transaction_timeout"),
			SignalBuffer:       p.intIn("sequencer.signal_buffer", 1, 100_000),
			PresenceMaxGroup:   p.intIn("sequencer.presence_max_group", 1, 1_000_000),
			CallIdle:           p.dur("sequencer.call_idle"),
			PresenceWindow:     p.dur("sequencer.presence_window"),
			TypingWindow:       p.dur("sequencer.typing_window"),
			TypingExpiry:       p.dur("sequencer.typing_expiry"),
			MaxGroupsPerUser:   p.intIn("sequencer.max_groups_per_user", 0, 4000),
			MaxMembersPerGroup: p.intIn("sequencer.max_members_per_group", 0, 10_000_000),
		},
		Admin: Admin{Pprof: p.boolean("admin.pprof")},
		Rollup: Rollup{
			GroupID: p.str("rollup.group_id"), InstanceID: p.str("rollup.instance_id"),
			Window:          p.dur("rollup.window"),
			CommitInterval:  p.dur("rollup.commit_interval"),
			MaxMessages:     p.intIn("rollup.max_messages", 1, 1_000_000),
			CountsOnlyAbove: p.intIn("rollup.counts_only_above", 1, 10_000_000),
			SenderOnlyAbove: p.intIn("rollup.sender_only_above", 1, 10_000_000),
			SlowFactor:      p.intIn("rollup.slow_factor", 1, 1000),
			ClickHouse:      p.boolean("rollup.clickhouse"),
		},
		Broker: Broker{Listen: p.str("broker.listen"), DataDir: p.str("broker.data_dir"), Sync: p.boolean("broker.sync")},
		Dev:    Dev{Edges: p.intIn("dev.edges", 1, 64), HTTPAddr: p.str("dev.http_addr"), DataDir: p.str("dev.data_dir")},
		Log:    Log{Level: p.oneOf("log.level", "debug", "info", "warn", "error"), Format: p.oneOf("log.format", "text", "json")},
		ClickHouse: ClickHouse{
			Addr: p.hostPort("clickhouse.addr"), Database: p.identifier("clickhouse.database"),
			Username: p.str("clickhouse.username"), Password: p.str("clickhouse.password"), TLS: p.boolean("clickhouse.tls"),
			TLSCAFile: p.str("clickhouse.tls_ca_file"),
		},
	}
	if len(p.errs) > 0 {
		return Config{}, errors.Join(p.errs...)
	}
	return c, nil
}

// parser reads keys strictly, collecting one error per bad key that names
// the key, the value and what is accepted.
type parser struct {
	v    *viper.Viper
	errs []error
}

func (p *parser) bad(key string, val any, want string) {
	p.errs = append(p.errs, fmt.Errorf("config %s = %q: want %s (flag, CAUSEWAY_%s or the config file)",
		key, fmt.Sprint(val), want, strings.ToUpper(strings.ReplaceAll(key, ".", "_"))))
}

func (p *parser) str(key string) string {
	s, err := cast.ToStringE(p.v.Get(key))
	if err != nil {
		p.bad(key, p.v.Get(key), "a string")
	}
	return strings.TrimSpace(s)
}

// secret reads a string as is (a password may start or end with spaces)
// and never puts the value in an error.
func (p *parser) secret(key string) string {
	s, err := cast.ToStringE(p.v.Get(key))
	if err != nil {
		p.errs = append(p.errs, fmt.Errorf("config %s: want a string (flag, CAUSEWAY_%s or the config file)",
			key, strings.ToUpper(strings.ReplaceAll(key, ".", "_"))))
	}
	return s
}

func (p *parser) list(key string) []string {
	raw := p.v.Get(key)
	var items []string
	switch x := raw.(type) {
	case string:
		items = strings.Split(x, ",")
	case []string:
		items = x
	case []any:
		for _, e := range x {
			items = append(items, fmt.Sprint(e))
		}
	default:
		p.bad(key, raw, "a comma-separated list")
		return nil
	}
	var out []string
	for _, s := range items {
		for _, part := range strings.Split(s, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
	}
	return out
}

func (p *parser) intIn(key string, lo, hi int) int {
	raw := p.v.Get(key)
	var n int
	var err error
	switch x := raw.(type) {
	case string:
		// Plain decimals only: cast would read "0x10" as hex and "010" as
		// octal (8).
		n, err = strconv.Atoi(strings.TrimSpace(x))
	case bool, float32, float64:
		// cast turns true into 1 and truncates 1.5 to 1.
		err = errors.New("not a whole number")
	default:
		n, err = cast.ToIntE(raw)
	}
	if err != nil || n < lo || n > hi {
		p.bad(key, raw, fmt.Sprintf("a whole number from %d to %d", lo, hi))
	}
	return n
}

func (p *parser) dur(key string) time.Duration {
	raw := p.v.Get(key)
	var d time.Duration
	var err error
	switch x := raw.(type) {
	case string:
		// Not cast: it reads a bare "10" as 10ns. time.ParseDuration
		// wants a unit.
		d, err = time.ParseDuration(strings.TrimSpace(x))
	case time.Duration:
		d = x
	default:
		// A YAML number (10, 1.5) has no unit.
		err = errors.New("no unit")
	}
	if err != nil || d <= 0 || d > 720*time.Hour {
		p.bad(key, raw, "a positive duration with a unit, up to 720h (e.g. 500ms, 10s, 24h)")
	}
	return d
}

// durOrOff is dur that also takes 0 (with or without a unit): off.
func (p *parser) durOrOff(key string) time.Duration {
	switch x := p.v.Get(key).(type) {
	case int:
		if x == 0 {
			return 0
		}
	case string:
		if s := strings.TrimSpace(x); s == "0" || s == "0s" {
			return 0
		}
	}
	return p.dur(key)
}

// durOrOffUpTo is durOrOff capped at hi.
func (p *parser) durOrOffUpTo(key string, hi time.Duration) time.Duration {
	d := p.durOrOff(key)
	if d > hi {
		p.bad(key, p.v.Get(key), fmt.Sprintf("0 (off) or a duration with a unit up to %s", hi))
	}
	return d
}

func (p *parser) boolean(key string) bool {
	b, err := cast.ToBoolE(p.v.Get(key))
	if err != nil {
		p.bad(key, p.v.Get(key), "true or false")
	}
	return b
}

// hostPort reads HOST:PORT with a port from 1 to 65535.
func (p *parser) hostPort(key string) string {
	s := p.str(key)
	host, port, err := net.SplitHostPort(s)
	n, perr := strconv.Atoi(port)
	if err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
		p.bad(key, s, "HOST:PORT with a port from 1 to 65535")
	}
	return s
}

// identifier reads a ClickHouse database name: letters, digits and
// underscores, not starting with a digit.
func (p *parser) identifier(key string) string {
	s := p.str(key)
	ok := s != ""
	for i, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			ok = false
		}
	}
	if !ok {
		p.bad(key, s, "letters, digits and underscores, not starting with a digit")
	}
	return s
}

func (p *parser) oneOf(key string, allowed ...string) string {
	s := strings.ToLower(p.str(key))
	for _, a := range allowed {
		if s == a {
			return s
		}
	}
	p.bad(key, s, "one of "+strings.Join(allowed, ", "))
	return s
}
