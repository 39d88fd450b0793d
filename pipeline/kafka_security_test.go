package pipeline_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/causeway/causeway/pipeline"
	"github.com/causeway/causeway/pipeline/devcluster"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// startBroker starts an embedded broker over TCP, closed when the test
// ends.
func startBroker(t *testing.T, cfg pipeline.BrokerConfig) *pipeline.Broker {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	b, err := pipeline.NewBroker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

func ping(t *testing.T, kc pipeline.KafkaConfig) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return kc.Ping(ctx)
}

// roundTrip produces a record and reads it back with kc: the connection
// carries real traffic, not only metadata.
func roundTrip(t *testing.T, kc pipeline.KafkaConfig, topic string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(append(kc.Opts(), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, -1, nil, topic); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		t.Fatalf("create topic: %v", err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("hello")}).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consume: %v", err)
		}
		for _, e := range fs.Errors() {
			t.Logf("fetch error %s/%d: %v", e.Topic, e.Partition, e.Err)
		}
		if fs.NumRecords() > 0 {
			if v := string(fs.Records()[0].Value); v != "hello" {
				t.Fatalf("read %q, want hello", v)
			}
			return
		}
	}
}

func wantErr(t *testing.T, what string, err error, subs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error", what)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%s: error %q lacks %q", what, err, s)
		}
	}
	t.Logf("%s: %v", what, err)
}

// Every SASL mechanism over TLS: the right password connects and carries
// records; a wrong password, an unknown user, a mechanism the user does not
// have and no SASL at all are refused with errors that say so.
func TestKafkaSASLMechanisms(t *testing.T) {
	t.Parallel()
	pki := devcluster.NewTestPKI(t)
	users := []pipeline.BrokerUser{
		{Mechanism: "plain", Username: "pam", Password: "pam-secret"},
		{Mechanism: "scram-sha-256", Username: "sam", Password: "sam-secret"},
		{Mechanism: "SCRAM-SHA-512", Username: "sue", Password: "sue:secret"},
	}
	b := startBroker(t, pipeline.BrokerConfig{Users: users, TLSCertFile: pki.ServerCert, TLSKeyFile: pki.ServerKey})
	if !b.TLS() || !b.SASL() {
		t.Fatalf("broker TLS %v SASL %v, want both", b.TLS(), b.SASL())
	}
	tlsOn := pipeline.KafkaTLS{Enabled: true, CAFile: pki.CAFile}
	for _, u := range users {
		t.Run(u.Mechanism, func(t *testing.T) {
			t.Parallel()
			kc := pipeline.KafkaConfig{Brokers: []string{b.Addr()}, ClientID: "test-" + u.Username, TLS: tlsOn,
				SASL: pipeline.KafkaSASL{Mechanism: u.Mechanism, Username: u.Username, Password: u.Password}}
			if err := ping(t, kc); err != nil {
				t.Fatalf("ping: %v", err)
			}
			roundTrip(t, kc, "t-"+u.Username)

			bad := kc
			bad.SASL.Password += "x"
			wantErr(t, "wrong password", ping(t, bad), "SASL", "authentication as \""+u.Username+"\" failed", "kafka.sasl.password")
			if strings.Contains(ping(t, bad).Error(), bad.SASL.Password) {
				t.Error("the error holds the password")
			}
			nobody := kc
			nobody.SASL.Username = "nobody"
			wantErr(t, "unknown user", ping(t, nobody), "SASL", "\"nobody\" failed")
		})
	}
	// sam has SCRAM-SHA-256 credentials only.
	kc := pipeline.KafkaConfig{Brokers: []string{b.Addr()}, TLS: tlsOn,
		SASL: pipeline.KafkaSASL{Mechanism: "scram-sha-512", Username: "sam", Password: "sam-secret"}}
	wantErr(t, "other mechanism", ping(t, kc), "SASL SCRAM-SHA-512", "kafka.sasl.mechanism")
	kc.SASL = pipeline.KafkaSASL{}
	wantErr(t, "no SASL", ping(t, kc), "may require SASL (kafka.sasl.*)")
}

// SASL without TLS (PLAIN then crosses the network in clear: for a broker
// on the same host only) works too.
func TestKafkaSASLPlaintext(t *testing.T) {
	t.Parallel()
	b := startBroker(t, pipeline.BrokerConfig{Users: []pipeline.BrokerUser{{Mechanism: "scram-sha-256", Username: "ann", Password: "pw"}}})
	kc := pipeline.KafkaConfig{Brokers: []string{b.Addr()}, SASL: pipeline.KafkaSASL{Mechanism: "scram-sha-256", Username: "ann", Password: "pw"}}
	roundTrip(t, kc, "plain-sasl")
	kc.SASL.Password = "wrong"
	wantErr(t, "wrong password", ping(t, kc), "SASL SCRAM-SHA-256 authentication as \"ann\" failed")
	kc.SASL = pipeline.KafkaSASL{}
	wantErr(t, "no SASL", ping(t, kc), "may require SASL (kafka.sasl.*) or TLS")
}

// TLS: a broker certificate from an unknown CA, or for another name, is
// refused; TLS to a plaintext broker and plaintext to a TLS broker say
// which side is wrong; with mTLS only a client certificate from the
// broker's CA gets in.
func TestKafkaTLS(t *testing.T) {
	t.Parallel()
	pki, rogue := devcluster.NewTestPKI(t), devcluster.NewTestPKI(t)
	b := startBroker(t, pipeline.BrokerConfig{TLSCertFile: pki.ServerCert, TLSKeyFile: pki.ServerKey})
	kc := pipeline.KafkaConfig{Brokers: []string{b.Addr()}, TLS: pipeline.KafkaTLS{Enabled: true, CAFile: pki.CAFile}}
	roundTrip(t, kc, "tls")

	unknownCA := kc
	unknownCA.TLS.CAFile = rogue.CAFile
	wantErr(t, "unknown CA", ping(t, unknownCA), "not signed by a trusted CA", rogue.CAFile, "unknown authority")
	systemRoots := kc
	systemRoots.TLS.CAFile = ""
	wantErr(t, "system roots", ping(t, systemRoots), "not signed by a trusted CA (kafka.tls.ca_file: the system's roots)")
	otherName := kc
	otherName.TLS.ServerName = "kafka.example.com"
	wantErr(t, "server name", ping(t, otherName), "kafka.tls.server_name")
	byName := kc
	byName.TLS.ServerName = "localhost"
	if err := ping(t, byName); err != nil {
		t.Fatalf("server_name localhost: %v", err)
	}
	plaintext := kc
	plaintext.TLS = pipeline.KafkaTLS{}
	wantErr(t, "plaintext to TLS", ping(t, plaintext), "may require SASL (kafka.sasl.*) or TLS (kafka.tls.enabled)")

	pb := startBroker(t, pipeline.BrokerConfig{})
	toPlain := kc
	toPlain.Brokers = []string{pb.Addr()}
	// kfake takes the ClientHello for the start of a huge request and
	// waits for the rest (Kafka closes the connection): no answer.
	shortCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	wantErr(t, "TLS to plaintext", toPlain.Ping(shortCtx), "does not speak TLS")

	mb := startBroker(t, pipeline.BrokerConfig{TLSCertFile: pki.ServerCert, TLSKeyFile: pki.ServerKey, TLSClientCAFile: pki.CAFile})
	mtls := kc
	mtls.Brokers = []string{mb.Addr()}
	mtls.TLS.CertFile, mtls.TLS.KeyFile = pki.ClientCert, pki.ClientKey
	roundTrip(t, mtls, "mtls")
	noCert := mtls
	noCert.TLS.CertFile, noCert.TLS.KeyFile = "", ""
	wantErr(t, "mTLS without a client certificate", ping(t, noCert), "kafka.tls.cert_file")
	rogueCert := mtls
	rogueCert.TLS.CertFile, rogueCert.TLS.KeyFile = rogue.ClientCert, rogue.ClientKey
	wantErr(t, "mTLS with a client certificate from another CA", ping(t, rogueCert), "TLS")
}

// Validate refuses incomplete or contradictory settings with the key to
// fix; Opts with such settings fails every dial with the same error
// instead of falling back to plaintext.
func TestKafkaConfigValidate(t *testing.T) {
	t.Parallel()
	pki := devcluster.NewTestPKI(t)
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")
	base := pipeline.KafkaConfig{Brokers: []string{"127.0.0.1:1"}}
	tests := []struct {
		name string
		edit func(*pipeline.KafkaConfig)
		want []string // empty: valid
	}{
		{"defaults", func(*pipeline.KafkaConfig) {}, nil},
		{"none spelled out", func(k *pipeline.KafkaConfig) { k.SASL.Mechanism = "none" }, nil},
		{"scram upper case", func(k *pipeline.KafkaConfig) {
			k.SASL = pipeline.KafkaSASL{Mechanism: "SCRAM-SHA-512", Username: "u", Password: "p"}
		}, nil},
		{"full TLS", func(k *pipeline.KafkaConfig) {
			k.TLS = pipeline.KafkaTLS{Enabled: true, CAFile: pki.CAFile, CertFile: pki.ClientCert, KeyFile: pki.ClientKey, ServerName: "localhost"}
		}, nil},
		{"unknown mechanism", func(k *pipeline.KafkaConfig) {
			k.SASL = pipeline.KafkaSASL{Mechanism: "gssapi", Username: "u", Password: "p"}
		}, []string{"kafka.sasl.mechanism", `"gssapi"`, "plain, scram-sha-256, scram-sha-512"}},
		{"no user", func(k *pipeline.KafkaConfig) { k.SASL = pipeline.KafkaSASL{Mechanism: "plain", Password: "p"} },
			[]string{"kafka.sasl.username: required with kafka.sasl.mechanism plain"}},
		{"no password", func(k *pipeline.KafkaConfig) { k.SASL = pipeline.KafkaSASL{Mechanism: "scram-sha-256", Username: "u"} },
			[]string{"kafka.sasl.password: required"}},
		{"credentials without mechanism", func(k *pipeline.KafkaConfig) { k.SASL = pipeline.KafkaSASL{Username: "u", Password: "p"} },
			[]string{"kafka.sasl.username and kafka.sasl.password set but kafka.sasl.mechanism is none"}},
		{"TLS files without TLS", func(k *pipeline.KafkaConfig) { k.TLS = pipeline.KafkaTLS{CAFile: pki.CAFile} },
			[]string{"kafka.tls.ca_file set but kafka.tls.enabled is false"}},
		{"missing CA file", func(k *pipeline.KafkaConfig) { k.TLS = pipeline.KafkaTLS{Enabled: true, CAFile: missing} },
			[]string{"kafka.tls.ca_file", missing}},
		{"CA file not PEM", func(k *pipeline.KafkaConfig) { k.TLS = pipeline.KafkaTLS{Enabled: true, CAFile: notPEM} },
			[]string{"kafka.tls.ca_file", "no PEM certificate"}},
		{"cert without key", func(k *pipeline.KafkaConfig) { k.TLS = pipeline.KafkaTLS{Enabled: true, CertFile: pki.ClientCert} },
			[]string{"kafka.tls.cert_file is set without kafka.tls.key_file"}},
		{"key without cert", func(k *pipeline.KafkaConfig) { k.TLS = pipeline.KafkaTLS{Enabled: true, KeyFile: pki.ClientKey} },
			[]string{"kafka.tls.key_file is set without kafka.tls.cert_file"}},
		{"key of another cert", func(k *pipeline.KafkaConfig) {
			k.TLS = pipeline.KafkaTLS{Enabled: true, CertFile: pki.ClientCert, KeyFile: pki.ServerKey}
		}, []string{"kafka.tls.cert_file", "private key does not match"}},
	}
	for _, tt := range tests {
		kc := base
		tt.edit(&kc)
		err := kc.Validate()
		if len(tt.want) == 0 {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: valid, want an error", tt.name)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", tt.name, err, w)
			}
		}
		// Opts never dials in plaintext with a broken security setting.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		cl, cerr := kgo.NewClient(kc.Opts()...)
		if cerr != nil {
			t.Fatalf("%s: %v", tt.name, cerr)
		}
		perr := cl.Ping(ctx)
		cl.Close()
		cancel()
		if perr == nil || !strings.Contains(perr.Error(), tt.want[0]) {
			t.Errorf("%s: dial with Opts: %v, want %q", tt.name, perr, tt.want[0])
		}
	}
}

// A renewed client certificate is picked up on the next connection.
func TestKafkaClientCertReload(t *testing.T) {
	t.Parallel()
	pki := devcluster.NewTestPKI(t)
	b := startBroker(t, pipeline.BrokerConfig{TLSCertFile: pki.ServerCert, TLSKeyFile: pki.ServerKey, TLSClientCAFile: pki.CAFile})
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	cp := func(from, to string) {
		t.Helper()
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rogue := devcluster.NewTestPKI(t)
	cp(rogue.ClientCert, cert)
	cp(rogue.ClientKey, key)
	tc, err := pipeline.KafkaTLS{Enabled: true, CAFile: pki.CAFile, CertFile: cert, KeyFile: key}.Config()
	if err != nil {
		t.Fatal(err)
	}
	newClient := func() *kgo.Client {
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.DialTLSConfig(tc))
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl := newClient()
	if err := cl.Ping(ctx); err == nil {
		t.Fatal("a certificate from another CA got in")
	}
	cl.Close()
	cp(pki.ClientCert, cert)
	cp(pki.ClientKey, key)
	future := time.Now().Add(time.Minute)
	for _, f := range []string{cert, key} {
		if err := os.Chtimes(f, future, future); err != nil {
			t.Fatal(err)
		}
	}
	cl = newClient()
	defer cl.Close()
	if err := cl.Ping(ctx); err != nil {
		t.Fatalf("after renewal: %v", err)
	}
}

// Broker users: parsed from MECHANISM:USER:PASSWORD, checked, and with a
// data dir only the configured ones count (kfake would restore the users
// of the previous run over them).
func TestBrokerUsers(t *testing.T) {
	t.Parallel()
	u, err := pipeline.ParseBrokerUser("scram-sha-256:ann:pa:ss")
	if err != nil || u != (pipeline.BrokerUser{Mechanism: "scram-sha-256", Username: "ann", Password: "pa:ss"}) {
		t.Fatalf("ParseBrokerUser = %+v, %v", u, err)
	}
	for _, bad := range []string{"ann:pw", "none:ann:pw", "md5:ann:pw", "plain::pw", "plain:ann:"} {
		if _, err := pipeline.ParseBrokerUser(bad); err == nil {
			t.Errorf("ParseBrokerUser(%q): no error", bad)
		}
	}
	for _, cfg := range []pipeline.BrokerConfig{
		{Listen: "127.0.0.1:0", TLSCertFile: "x.pem"},
		{Listen: "127.0.0.1:0", TLSClientCAFile: "ca.pem"},
		{Listen: "127.0.0.1:0", Users: []pipeline.BrokerUser{{Mechanism: "plain", Username: "a", Password: "1"}, {Mechanism: "PLAIN", Username: "a", Password: "2"}}},
	} {
		if b, err := pipeline.NewBroker(cfg); err == nil {
			b.Close()
			t.Errorf("NewBroker(%+v): no error", cfg)
		}
	}

	dir := t.TempDir()
	user := func(pw string) []pipeline.BrokerUser {
		return []pipeline.BrokerUser{{Mechanism: "scram-sha-256", Username: "ann", Password: pw}}
	}
	kc := func(addr, pw string) pipeline.KafkaConfig {
		return pipeline.KafkaConfig{Brokers: []string{addr}, SASL: pipeline.KafkaSASL{Mechanism: "scram-sha-256", Username: "ann", Password: pw}}
	}
	b, err := pipeline.NewBroker(pipeline.BrokerConfig{Listen: "127.0.0.1:0", DataDir: dir, Users: user("old")})
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, kc(b.Addr(), "old"), "kept")
	b.Close()
	if _, err := os.Stat(filepath.Join(dir, "sasl.json")); err != nil {
		t.Logf("kfake stored no users (%v): the restart below still checks", err)
	}
	b = startBroker(t, pipeline.BrokerConfig{DataDir: dir, Users: user("new")})
	wantErr(t, "the previous run's password", ping(t, kc(b.Addr(), "old")), "SASL")
	roundTrip(t, kc(b.Addr(), "new"), "kept")
}
