package config_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/causeway/causeway/cmd/causeway/internal/config"
	"github.com/spf13/pflag"
)

// TestMain clears CAUSEWAY_* from the environment so the parallel tests
// (which never touch env) see only the layers they set up themselves.
func TestMain(m *testing.M) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "CAUSEWAY_") {
			os.Unsetenv(k)
		}
	}
	os.Exit(m.Run())
}

// writeFile writes a YAML config file into a temp dir and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// flagLoader returns a Loader with a real FlagSet bound the way
// cmd/causeway binds its flags, after parsing args.
func flagLoader(t *testing.T, args ...string) *config.Loader {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.String("brokers", "", "")
	fs.Int("queue-frames", 0, "")
	fs.Duration("hello-timeout", 0, "")
	fs.Bool("sync", false, "")
	fs.String("log-level", "", "")
	fs.StringSlice("origins", nil, "")
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse flags %q: %v", args, err)
	}
	l := config.NewLoader()
	for name, key := range map[string]string{
		"brokers":       "kafka.brokers",
		"queue-frames":  "edge.queue_frames",
		"hello-timeout": "edge.hello_timeout",
		"sync":          "broker.sync",
		"log-level":     "log.level",
		"origins":       "edge.allowed_origins",
	} {
		if err := l.BindFlag(key, fs.Lookup(name)); err != nil {
			t.Fatalf("BindFlag(%s, --%s): %v", key, name, err)
		}
	}
	return l
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	c, err := config.NewLoader().Load("")
	if err != nil {
		t.Fatalf("Load with no file, env or flags: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"kafka.brokers", c.Kafka.Brokers, []string{"127.0.0.1:9092"}},
		{"kafka.client_id", c.Kafka.ClientID, "causeway"},
		{"topics.groups", c.Topics.Groups, "causeway.groups"},
		{"topics.group_partitions", c.Topics.GroupPartitions, 8},
		{"topics.delivery_partitions", c.Topics.DeliveryPartitions, 16},
		{"topics.replication_factor", c.Topics.ReplicationFactor, -1},
		{"auth.secret", c.Auth.Secret, config.DevSecret},
		{"edge.allowed_origins", c.Edge.AllowedOrigins, []string(nil)},
		{"auth.jwks_refresh", c.Auth.JWKSRefresh, 5 * time.Minute},
		{"auth.max_token_lifetime", c.Auth.MaxTokenLifetime, 24 * time.Hour},
		{"auth.jwks_url", c.Auth.JWKSURL, ""},
		{"edge.conn_frames_per_sec", c.Edge.ConnFramesPerSec, 250},
		{"edge.conn_bytes_per_sec", c.Edge.ConnBytesPerSec, 4 << 20},
		{"edge.user_frames_per_sec", c.Edge.UserFramesPerSec, 500},
		{"edge.user_bytes_per_sec", c.Edge.UserBytesPerSec, 8 << 20},
		{"edge.max_rate_limited", c.Edge.MaxRateLimited, 100},
		{"edge.max_sessions_per_user", c.Edge.MaxSessionsPerUser, 32},
		{"edge.max_subscriptions", c.Edge.MaxSubscriptions, 1000},
		{"edge.max_conns_per_ip", c.Edge.MaxConnsPerIP, 1000},
		{"edge.conn_rate_per_ip", c.Edge.ConnRatePerIP, 20},
		{"edge.ip_limits_exempt", c.Edge.IPLimitsExempt, []string{"127.0.0.0/8", "::1"}},
		{"edge.idle_timeout", c.Edge.IdleTimeout, 5 * time.Minute},
		{"edge.trusted_proxies", c.Edge.TrustedProxies, []string(nil)},
		{"edge.max_frame_bytes", c.Edge.MaxFrameBytes, 64 << 10},
		{"edge.max_body_bytes", c.Edge.MaxBodyBytes, 32 << 10},
		{"edge.reach", c.Edge.Reach, "shared_group"},
		{"sequencer.max_groups_per_user", c.Sequencer.MaxGroupsPerUser, 1000},
		{"sequencer.max_members_per_group", c.Sequencer.MaxMembersPerGroup, 10000},
		{"edge.queue_frames", c.Edge.QueueFrames, 4096},
		{"edge.hello_timeout", c.Edge.HelloTimeout, 10 * time.Second},
		{"edge.heartbeat_interval", c.Edge.Heartbeat, 3 * time.Second},
		{"sequencer.session_timeout", c.Sequencer.SessionTimeout, 6 * time.Second},
		{"broker.sync", c.Broker.Sync, false},
		{"dev.edges", c.Dev.Edges, 2},
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, "text"},
	}
	for _, ck := range checks {
		if !reflect.DeepEqual(ck.got, ck.want) {
			t.Errorf("default %s = %#v, want %#v", ck.name, ck.got, ck.want)
		}
	}
}

// TestBindFlagUnknownKey: binding a flag to a key that does not exist is a
// programming error caught at start-up, naming the key and the flag.
func TestBindFlagUnknownKey(t *testing.T) {
	t.Parallel()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.String("nope", "", "")
	err := config.NewLoader().BindFlag("edge.nope", fs.Lookup("nope"))
	if err == nil || !strings.Contains(err.Error(), "edge.nope") || !strings.Contains(err.Error(), "--nope") {
		t.Fatalf("BindFlag(edge.nope) = %v, want an error naming the key and the flag", err)
	}
}

// TestPrecedence proves flag > env > file > default, one layer at a time,
// for a string, a list, an int, a duration, a bool and an enum key.
func TestPrecedence(t *testing.T) {
	file := writeFile(t, "causeway.yaml", `
kafka:
  brokers: file-broker:9092
edge:
  queue_frames: 111
  hello_timeout: 11s
  allowed_origins: [https://file.example]
broker:
  sync: true
log:
  level: warn
`)
	type want struct {
		brokers []string
		frames  int
		hello   time.Duration
		sync    bool
		level   string
		origins []string
	}
	def := want{[]string{"127.0.0.1:9092"}, 4096, 10 * time.Second, false, "info", nil}
	fromFile := want{[]string{"file-broker:9092"}, 111, 11 * time.Second, true, "warn", []string{"https://file.example"}}
	fromEnv := want{[]string{"env-a:1", "env-b:2"}, 222, 22 * time.Second, false, "error", []string{"https://env.example"}}
	fromFlag := want{[]string{"flag-broker:9092"}, 333, 33 * time.Second, true, "debug", []string{"https://flag.example", "https://two.example"}}
	env := map[string]string{
		"CAUSEWAY_KAFKA_BROKERS":        "env-a:1, env-b:2",
		"CAUSEWAY_EDGE_QUEUE_FRAMES":    "222",
		"CAUSEWAY_EDGE_HELLO_TIMEOUT":   "22s",
		"CAUSEWAY_BROKER_SYNC":          "false",
		"CAUSEWAY_LOG_LEVEL":            "error",
		"CAUSEWAY_EDGE_ALLOWED_ORIGINS": "https://env.example",
	}
	flags := []string{
		"--brokers=flag-broker:9092", "--queue-frames=333", "--hello-timeout=33s",
		"--sync=true", "--log-level=debug", "--origins=https://flag.example,https://two.example",
	}
	tests := []struct {
		name  string
		file  bool
		env   bool
		flags bool
		want  want
	}{
		{"default only", false, false, false, def},
		{"file over default", true, false, false, fromFile},
		{"env over default", false, true, false, fromEnv},
		{"env over file", true, true, false, fromEnv},
		{"flag over default", false, false, true, fromFlag},
		{"flag over file", true, false, true, fromFlag},
		{"flag over env", false, true, true, fromFlag},
		{"flag over env over file", true, true, true, fromFlag},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env {
				for k, v := range env {
					t.Setenv(k, v)
				}
			}
			var args []string
			if tt.flags {
				args = flags
			}
			l := flagLoader(t, args...)
			path := ""
			if tt.file {
				path = file
			}
			c, err := l.Load(path)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			got := want{c.Kafka.Brokers, c.Edge.QueueFrames, c.Edge.HelloTimeout, c.Broker.Sync, c.Log.Level, c.Edge.AllowedOrigins}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestUnchangedFlagDoesNotMask: a bound flag the user did not pass must not
// hide the env, file or default value behind the flag's own zero default.
func TestUnchangedFlagDoesNotMask(t *testing.T) {
	t.Setenv("CAUSEWAY_EDGE_QUEUE_FRAMES", "500")
	file := writeFile(t, "c.yaml", "log:\n  level: warn\n")
	c, err := flagLoader(t).Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if c.Edge.QueueFrames != 500 || c.Log.Level != "warn" || c.Kafka.Brokers[0] != "127.0.0.1:9092" || c.Edge.HelloTimeout != 10*time.Second {
		t.Errorf("unset flags masked lower layers: queue_frames=%d (want 500 from env), log.level=%q (want warn from file), brokers=%v (want default), hello_timeout=%v (want default 10s)",
			c.Edge.QueueFrames, c.Log.Level, c.Kafka.Brokers, c.Edge.HelloTimeout)
	}
}

// TestConfigFileFromEnv: with no --config, CAUSEWAY_CONFIG names the file.
func TestConfigFileFromEnv(t *testing.T) {
	t.Setenv("CAUSEWAY_CONFIG", writeFile(t, "c.yaml", "dev:\n  edges: 5\n"))
	c, err := config.NewLoader().Load("")
	if err != nil {
		t.Fatal(err)
	}
	if c.Dev.Edges != 5 {
		t.Errorf("dev.edges = %d, want 5 from the file named by CAUSEWAY_CONFIG", c.Dev.Edges)
	}
}

func TestLists(t *testing.T) {
	t.Run("env", func(t *testing.T) {
		tests := []struct {
			env  string
			want []string
		}{
			{"a:1", []string{"a:1"}},
			{"a:1,b:2", []string{"a:1", "b:2"}},
			{" a:1 , b:2 ,, c:3 ,", []string{"a:1", "b:2", "c:3"}},
			{" , ", nil},
		}
		for _, tt := range tests {
			t.Run(tt.env, func(t *testing.T) {
				t.Setenv("CAUSEWAY_KAFKA_BROKERS", tt.env)
				t.Setenv("CAUSEWAY_EDGE_ALLOWED_ORIGINS", tt.env)
				c, err := config.NewLoader().Load("")
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(c.Kafka.Brokers, tt.want) || !reflect.DeepEqual(c.Edge.AllowedOrigins, tt.want) {
					t.Errorf("env %q: brokers %#v, origins %#v, want %#v", tt.env, c.Kafka.Brokers, c.Edge.AllowedOrigins, tt.want)
				}
			})
		}
	})
	t.Run("file", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name, yaml string
			want       []string
		}{
			{"block list", "kafka:\n  brokers:\n    - a:1\n    - b:2\n", []string{"a:1", "b:2"}},
			{"flow list", "kafka:\n  brokers: [a:1, ' b:2 ']\n", []string{"a:1", "b:2"}},
			{"comma string", "kafka:\n  brokers: a:1,b:2\n", []string{"a:1", "b:2"}},
			{"list items with commas", "kafka:\n  brokers: ['a:1,b:2', c:3]\n", []string{"a:1", "b:2", "c:3"}},
			{"single", "kafka:\n  brokers: a:1\n", []string{"a:1"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				c, err := config.NewLoader().Load(writeFile(t, "c.yaml", tt.yaml))
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(c.Kafka.Brokers, tt.want) {
					t.Errorf("brokers = %#v, want %#v", c.Kafka.Brokers, tt.want)
				}
			})
		}
	})
}

// TestValidValues: accepted spellings that must keep working.
func TestValidValues(t *testing.T) {
	tests := []struct {
		env, val string
		check    func(config.Config) bool
	}{
		{"CAUSEWAY_EDGE_QUEUE_FRAMES", "16", func(c config.Config) bool { return c.Edge.QueueFrames == 16 }},
		{"CAUSEWAY_EDGE_QUEUE_FRAMES", "1048576", func(c config.Config) bool { return c.Edge.QueueFrames == 1<<20 }},
		{"CAUSEWAY_EDGE_QUEUE_FRAMES", " 64 ", func(c config.Config) bool { return c.Edge.QueueFrames == 64 }},
		// Decimal, not octal (cast alone would read 0100 as 64).
		{"CAUSEWAY_EDGE_QUEUE_FRAMES", "0100", func(c config.Config) bool { return c.Edge.QueueFrames == 100 }},
		{"CAUSEWAY_TOPICS_REPLICATION_FACTOR", "-1", func(c config.Config) bool { return c.Topics.ReplicationFactor == -1 }},
		{"CAUSEWAY_TOPICS_REPLICATION_FACTOR", "3", func(c config.Config) bool { return c.Topics.ReplicationFactor == 3 }},
		{"CAUSEWAY_EDGE_HELLO_TIMEOUT", "500ms", func(c config.Config) bool { return c.Edge.HelloTimeout == 500*time.Millisecond }},
		{"CAUSEWAY_EDGE_HELLO_TIMEOUT", "1m30s", func(c config.Config) bool { return c.Edge.HelloTimeout == 90*time.Second }},
		{"CAUSEWAY_EDGE_HELLO_TIMEOUT", "24h", func(c config.Config) bool { return c.Edge.HelloTimeout == 24*time.Hour }},
		{"CAUSEWAY_BROKER_SYNC", "true", func(c config.Config) bool { return c.Broker.Sync }},
		{"CAUSEWAY_BROKER_SYNC", "1", func(c config.Config) bool { return c.Broker.Sync }},
		{"CAUSEWAY_LOG_LEVEL", "WARN", func(c config.Config) bool { return c.Log.Level == "warn" }},
		{"CAUSEWAY_LOG_FORMAT", "json", func(c config.Config) bool { return c.Log.Format == "json" }},
		{"CAUSEWAY_EDGE_ID", "  edge-7  ", func(c config.Config) bool { return c.Edge.ID == "edge-7" }},
		// Limits: 0 turns one off.
		{"CAUSEWAY_EDGE_IDLE_TIMEOUT", "0", func(c config.Config) bool { return c.Edge.IdleTimeout == 0 }},
		{"CAUSEWAY_EDGE_IDLE_TIMEOUT", "90s", func(c config.Config) bool { return c.Edge.IdleTimeout == 90*time.Second }},
		{"CAUSEWAY_EDGE_CONN_FRAMES_PER_SEC", "0", func(c config.Config) bool { return c.Edge.ConnFramesPerSec == 0 }},
		{"CAUSEWAY_EDGE_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7", func(c config.Config) bool {
			return len(c.Edge.TrustedProxies) == 2 && c.Edge.TrustedProxies[1] == "192.168.1.7"
		}},
		{"CAUSEWAY_AUTH_MAX_TOKEN_LIFETIME", "1h", func(c config.Config) bool { return c.Auth.MaxTokenLifetime == time.Hour }},
		{"CAUSEWAY_EDGE_REACH", "ANY", func(c config.Config) bool { return c.Edge.Reach == "any" }},
		{"CAUSEWAY_EDGE_MAX_BODY_BYTES", "0", func(c config.Config) bool { return c.Edge.MaxBodyBytes == 0 }},
		{"CAUSEWAY_SEQUENCER_MAX_GROUPS_PER_USER", "0", func(c config.Config) bool { return c.Sequencer.MaxGroupsPerUser == 0 }},
		{"CAUSEWAY_SEQUENCER_MAX_MEMBERS_PER_GROUP", "2", func(c config.Config) bool { return c.Sequencer.MaxMembersPerGroup == 2 }},
		{"CAUSEWAY_SEQUENCER_LINGER", "0", func(c config.Config) bool { return c.Sequencer.Linger == 0 }},
		{"CAUSEWAY_SEQUENCER_LINGER", "5ms", func(c config.Config) bool { return c.Sequencer.Linger == 5*time.Millisecond }},
	}
	for _, tt := range tests {
		t.Run(tt.env+"="+tt.val, func(t *testing.T) {
			t.Setenv(tt.env, tt.val)
			c, err := config.NewLoader().Load("")
			if err != nil {
				t.Fatalf("%s=%q: %v", tt.env, tt.val, err)
			}
			if !tt.check(c) {
				t.Errorf("%s=%q not applied: %+v", tt.env, tt.val, c)
			}
		})
	}
}

// badCase is one bad value and the words its error must contain: the key,
// the value as given, and what is accepted.
type badCase struct {
	key, val string
	accepts  string
}

var badValues = []badCase{
	{"edge.queue_frames", "lots", "a whole number from 16 to 1048576"},
	{"edge.queue_frames", "12.5", "a whole number from 16 to 1048576"},
	{"edge.queue_frames", "0x100", "a whole number from 16 to 1048576"},
	{"edge.queue_frames", "1e3", "a whole number from 16 to 1048576"},
	{"edge.queue_frames", "15", "a whole number from 16 to 1048576"},
	{"edge.queue_frames", "1048577", "a whole number from 16 to 1048576"},
	{"edge.queue_frames", "-20", "a whole number from 16 to 1048576"},
	{"edge.queue_frames", "99999999999999999999", "a whole number from 16 to 1048576"},
	{"topics.group_partitions", "0", "a whole number from 1 to 10000"},
	{"topics.replication_factor", "-2", "a whole number from -1 to 32767"},
	{"dev.edges", "65", "a whole number from 1 to 64"},
	{"edge.hello_timeout", "10", "a positive duration with a unit"},
	{"sequencer.linger", "2s", "0 (off) or a duration with a unit up to 1s"},
	{"sequencer.linger", "-1ms", "a positive duration with a unit"},
	{"sequencer.linger", "soon", "a positive duration with a unit"},
	{"edge.hello_timeout", "10 s", "a positive duration with a unit"},
	{"edge.hello_timeout", "soon", "a positive duration with a unit"},
	{"edge.hello_timeout", "0s", "a positive duration with a unit"},
	{"edge.hello_timeout", "-5s", "a positive duration with a unit"},
	{"edge.hello_timeout", "721h", "up to 720h"},
	{"sequencer.session_timeout", "6", "a positive duration with a unit"},
	{"broker.sync", "yes", "true or false"},
	{"edge.conn_frames_per_sec", "-1", "a whole number from 0 to 1000000"},
	{"edge.max_conns_per_ip", "many", "a whole number from 0 to 10000000"},
	{"edge.idle_timeout", "-1s", "a positive duration with a unit"},
	{"auth.jwks_refresh", "0s", "a positive duration with a unit"},
	{"broker.sync", "maybe", "true or false"},
	{"log.level", "verbose", "one of debug, info, warn, error"},
	{"log.format", "xml", "one of text, json"},
	{"edge.reach", "friends", "one of shared_group, any"},
	{"edge.max_body_bytes", "-1", "a whole number from 0 to 16777216"},
	{"sequencer.max_groups_per_user", "4001", "a whole number from 0 to 4000"},
	{"sequencer.max_members_per_group", "-1", "a whole number from 0 to 10000000"},
}

func envName(key string) string {
	return "CAUSEWAY_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

func checkBad(t *testing.T, err error, bc badCase) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s = %q: Load succeeded, want an error", bc.key, bc.val)
	}
	for _, want := range []string{bc.key, `"` + bc.val + `"`, bc.accepts, envName(bc.key)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s = %q: error %q does not contain %q", bc.key, bc.val, err, want)
		}
	}
}

func TestBadValuesFromEnv(t *testing.T) {
	for _, bc := range badValues {
		t.Run(bc.key+"="+bc.val, func(t *testing.T) {
			t.Setenv(envName(bc.key), bc.val)
			_, err := config.NewLoader().Load("")
			checkBad(t, err, bc)
		})
	}
}

// TestBadValuesFromFile: the same checks when the value comes from YAML,
// where numbers and bools arrive typed, not as strings.
func TestBadValuesFromFile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		yaml string
		bc   badCase
	}{
		{"edge:\n  queue_frames: lots\n", badCase{"edge.queue_frames", "lots", "a whole number from 16 to 1048576"}},
		{"edge:\n  queue_frames: 12.5\n", badCase{"edge.queue_frames", "12.5", "a whole number from 16 to 1048576"}},
		{"edge:\n  queue_frames: 2000000\n", badCase{"edge.queue_frames", "2000000", "a whole number from 16 to 1048576"}},
		{"dev:\n  edges: true\n", badCase{"dev.edges", "true", "a whole number from 1 to 64"}},
		{"dev:\n  edges: 1.5\n", badCase{"dev.edges", "1.5", "a whole number from 1 to 64"}},
		{"edge:\n  hello_timeout: 10\n", badCase{"edge.hello_timeout", "10", "a positive duration with a unit"}},
		{"edge:\n  hello_timeout: 1.5\n", badCase{"edge.hello_timeout", "1.5", "a positive duration with a unit"}},
		{"edge:\n  hello_timeout: \"10\"\n", badCase{"edge.hello_timeout", "10", "a positive duration with a unit"}},
		{"broker:\n  sync: maybe\n", badCase{"broker.sync", "maybe", "true or false"}},
		{"log:\n  level: verbose\n", badCase{"log.level", "verbose", "one of debug, info, warn, error"}},
		{"kafka:\n  client_id: [a, b]\n", badCase{"kafka.client_id", "[a b]", "a string"}},
		{"kafka:\n  brokers: 5\n", badCase{"kafka.brokers", "5", "a comma-separated list"}},
	}
	for _, tt := range tests {
		t.Run(tt.bc.key+"="+tt.bc.val, func(t *testing.T) {
			t.Parallel()
			_, err := config.NewLoader().Load(writeFile(t, "c.yaml", tt.yaml))
			checkBad(t, err, tt.bc)
		})
	}
}

func TestBadValuesFromFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		bc   badCase
	}{
		{[]string{"--queue-frames=1"}, badCase{"edge.queue_frames", "1", "a whole number from 16 to 1048576"}},
		{[]string{"--log-level=loud"}, badCase{"log.level", "loud", "one of debug, info, warn, error"}},
		{[]string{"--hello-timeout=800h"}, badCase{"edge.hello_timeout", "800h0m0s", "up to 720h"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			_, err := flagLoader(t, tt.args...).Load("")
			checkBad(t, err, tt.bc)
		})
	}
}

// TestAllBadValuesReported: several bad keys give one error naming each,
// so a user fixes them in one go.
func TestAllBadValuesReported(t *testing.T) {
	t.Parallel()
	_, err := config.NewLoader().Load(writeFile(t, "c.yaml", `
edge:
  queue_frames: 1
  ping_interval: 20
log:
  format: xml
`))
	if err == nil {
		t.Fatal("Load succeeded with three bad values")
	}
	for _, k := range []string{"edge.queue_frames", "edge.ping_interval", "log.format"} {
		if !strings.Contains(err.Error(), k) {
			t.Errorf("error %q does not name %s", err, k)
		}
	}
}

func TestFileErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name string
		path string
		want []string // substrings of the error
	}{
		{"unknown key", writeFile(t, "c.yaml", "edge:\n  queue_frame: 10\nkafka:\n  brokerz: x\n"),
			[]string{"unknown keys", "edge.queue_frame", "kafka.brokerz", "configuration reference"}},
		{"unknown section", writeFile(t, "c.yaml", "edges:\n  id: x\n"),
			[]string{"unknown keys", "edges.id"}},
		{"missing file", filepath.Join(dir, "nope.yaml"), []string{"read config file", "nope.yaml"}},
		{"directory", dir, []string{"read config file", dir}},
		{"bad yaml", writeFile(t, "c.yaml", "edge: [\n  id: x\n"), []string{"read config file", "c.yaml"}},
		{"unsupported extension", writeFile(t, "c.conf", "edge.id = x\n"), []string{"read config file", "c.conf"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.NewLoader().Load(tt.path)
			if err == nil {
				t.Fatalf("Load(%s) succeeded, want an error", tt.path)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestUnreadableFile: a file that exists but cannot be read (skipped as
// root, where permissions do not stop a read).
func TestUnreadableFile(t *testing.T) {
	t.Parallel()
	if os.Geteuid() == 0 {
		t.Skip("root reads files regardless of mode; the directory and missing-file cases cover read errors")
	}
	p := writeFile(t, "c.yaml", "log:\n  level: info\n")
	if err := os.Chmod(p, 0); err != nil {
		t.Fatal(err)
	}
	_, err := config.NewLoader().Load(p)
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("Load(unreadable) = %v, want a read error naming %s", err, p)
	}
}

// TestEveryDefaultKeyIsRead: each key in Defaults reaches the parser, so a
// bad value for any of them fails Load (no key is silently ignored).
func TestEveryDefaultKeyIsRead(t *testing.T) {
	for key, def := range config.Defaults {
		bad := "[not valid]"
		switch def.(type) {
		case string:
			if !strings.HasSuffix(key, "timeout") && !strings.HasSuffix(key, "interval") &&
				key != "log.level" && key != "log.format" && key != "edge.reach" {
				continue // any string is a valid string
			}
		}
		t.Run(key, func(t *testing.T) {
			t.Setenv(envName(key), bad)
			_, err := config.NewLoader().Load("")
			if err == nil || !strings.Contains(err.Error(), key) {
				t.Errorf("%s=%q: Load error %v, want one naming %s", envName(key), bad, err, key)
			}
		})
	}
}
