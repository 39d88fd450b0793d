package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/causeway/causeway/cmd/causeway/internal/config"
	"github.com/causeway/causeway/pipeline"
	"github.com/causeway/causeway/pipeline/devcluster"
)

// kafkaYAML is a config file with SASL and TLS to Kafka.
func kafkaYAML(t *testing.T, mech, user, pass string, pki devcluster.TestPKI, extra string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "causeway.yaml")
	y := "kafka:\n  sasl:\n    mechanism: " + mech + "\n    username: " + user + "\n    password: " + pass +
		"\n  tls:\n    enabled: true\n    ca_file: " + pki.CAFile + "\n" + extra
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// The kafka.sasl.* and kafka.tls.* keys reach every role's Kafka config.
func TestKafkaSecurityKeysReachEveryRole(t *testing.T) {
	t.Parallel()
	pki := devcluster.NewTestPKI(t)
	file := kafkaYAML(t, "SCRAM-SHA-512", "svc", "pw", pki,
		"    cert_file: "+pki.ClientCert+"\n    key_file: "+pki.ClientKey+"\n    server_name: localhost\n")
	c, err := config.NewLoader().Load(file)
	if err != nil {
		t.Fatal(err)
	}
	want := pipeline.KafkaConfig{
		SASL: pipeline.KafkaSASL{Mechanism: "scram-sha-512", Username: "svc", Password: "pw"},
		TLS:  pipeline.KafkaTLS{Enabled: true, CAFile: pki.CAFile, CertFile: pki.ClientCert, KeyFile: pki.ClientKey, ServerName: "localhost"},
	}
	roles := map[string]pipeline.KafkaConfig{
		"edge":      edgeConfig(c, "e1", "127.0.0.1:0", nil).Kafka,
		"sequencer": sequencerConfig(c, "s1", nil, nil).Kafka,
		"rollup":    rollupConfig(c, "r1", nil, nil).Kafka,
		"inspect":   kafkaConfig(c, "inspect"),
		"topics":    kafkaConfig(c, "topics"),
		"replay":    kafkaConfig(c, "replay"),
	}
	if sc, err := analyticsSinkConfig(c, nil, nil, false); err == nil {
		roles["rollup-sink"] = sc.Kafka
	} else {
		t.Logf("analytics sink config: %v (not checked)", err)
	}
	for role, k := range roles {
		if k.SASL != want.SASL || k.TLS != want.TLS {
			t.Errorf("%s: SASL %+v TLS %+v, want %+v %+v", role, k.SASL, k.TLS, want.SASL, want.TLS)
		}
		if err := k.Validate(); err != nil {
			t.Errorf("%s: %v", role, err)
		}
	}

	_, err = config.NewLoader().Load(kafkaYAML(t, "kerberos", "svc", "pw", pki, ""))
	if err == nil || !strings.Contains(err.Error(), "kafka.sasl.mechanism") || !strings.Contains(err.Error(), "scram-sha-256") {
		t.Errorf("unknown mechanism: %v", err)
	}
	c, err = config.NewLoader().Load(kafkaYAML(t, "plain", "", "pw", pki, ""))
	if err != nil {
		t.Fatal(err)
	}
	if err := kafkaConfig(c, "edge").Validate(); err == nil || !strings.Contains(err.Error(), "kafka.sasl.username") {
		t.Errorf("no username: %v", err)
	}
	// A role refuses to start with it.
	edgeFile := kafkaYAML(t, "plain", "", "pw", pki, "auth:\n  secret: a-test-secret-of-at-least-32-bytes-long\n")
	err = run(t.Context(), []string{"edge", "--config", edgeFile, "--id", "e1", "--http-addr", "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "kafka.sasl.username") {
		t.Errorf("causeway edge with no username: %v", err)
	}
}

// `causeway broker` with --sasl-user, --tls-cert and --tls-key, and the
// kafka.sasl.* identity of its config; `causeway topics` reaches it with
// the same keys.
func TestBrokerCommandSASLAndTLS(t *testing.T) {
	t.Parallel()
	pki := devcluster.NewTestPKI(t)
	scram := kafkaYAML(t, "scram-sha-256", "roles", "roles-pw", pki, "")
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	root := newRoot()
	root.SetOut(pw)
	root.SetArgs([]string{"broker", "--config", scram, "--listen", "127.0.0.1:0",
		"--sasl-user", "plain:ops:ops:pw", "--tls-cert", pki.ServerCert, "--tls-key", pki.ServerKey})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx); _ = pw.Close() }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("broker: %v", err)
		}
	})
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("broker output: %v", err)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	addr := strings.TrimSpace(strings.TrimPrefix(line, "broker listening on "))

	out, err := runOut(t, "topics", "create", "--config", scram, "--brokers", addr, "--replication-factor", "-1")
	if err != nil || !strings.Contains(out, "layout ok") {
		t.Fatalf("topics create as the roles' SCRAM user: %v\n%s", err, out)
	}
	ops := kafkaYAML(t, "plain", "ops", "ops:pw", pki, "")
	out, err = runOut(t, "topics", "check", "--config", ops, "--brokers", addr, "--replication-factor", "-1")
	if err != nil || !strings.Contains(out, "layout ok") {
		t.Fatalf("topics check as the --sasl-user PLAIN user: %v\n%s", err, out)
	}
	for name, kc := range map[string]pipeline.KafkaConfig{
		"wrong password": {SASL: pipeline.KafkaSASL{Mechanism: "plain", Username: "ops", Password: "nope"}, TLS: pipeline.KafkaTLS{Enabled: true, CAFile: pki.CAFile}},
		"no TLS":         {SASL: pipeline.KafkaSASL{Mechanism: "plain", Username: "ops", Password: "ops:pw"}},
	} {
		kc.Brokers = []string{addr}
		pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := kc.Ping(pctx); err == nil {
			t.Errorf("%s: connected", name)
		}
		pcancel()
	}
	// A role with a wrong password stops at start with an error naming the
	// keys to check, instead of retrying closed connections forever.
	wrong := kafkaYAML(t, "plain", "ops", "not-the-password", pki, "auth:\n  secret: a-test-secret-of-at-least-32-bytes-long\n")
	for _, role := range [][]string{
		{"sequencer", "--id", "s-wrong"},
		{"rollup", "--id", "r-wrong"},
		{"edge", "--id", "e-wrong", "--http-addr", "127.0.0.1:0"},
	} {
		rctx, rcancel := context.WithTimeout(context.Background(), 2*kafkaCheckTimeout)
		start := time.Now()
		err := run(rctx, append(role, "--config", wrong, "--brokers", addr))
		timedOut := rctx.Err() != nil
		rcancel()
		switch {
		case err == nil || timedOut:
			t.Errorf("%s with a wrong SASL password: %v after %v, want an error at start", role[0], err, time.Since(start).Round(time.Millisecond))
		case !strings.Contains(err.Error(), "SASL") || !strings.Contains(err.Error(), "kafka.sasl.password"):
			t.Errorf("%s with a wrong SASL password: %v", role[0], err)
		case strings.Contains(err.Error(), "not-the-password"):
			t.Errorf("%s: the error shows the password: %v", role[0], err)
		}
	}
	for _, args := range [][]string{
		{"broker", "--listen", "127.0.0.1:0", "--sasl-user", "ops:pw"},
		{"broker", "--listen", "127.0.0.1:0", "--sasl-user", "gssapi:ops:pw"},
		{"broker", "--listen", "127.0.0.1:0", "--tls-cert", pki.ServerCert},
		{"broker", "--listen", "127.0.0.1:0", "--tls-cert", pki.ServerCert, "--tls-key", pki.ClientKey},
	} {
		if err := run(t.Context(), args); err == nil {
			t.Errorf("causeway %s: no error", strings.Join(args, " "))
		} else if strings.Contains(err.Error(), ":pw") {
			t.Errorf("causeway %s: the error shows the password: %v", strings.Join(args, " "), err)
		}
	}
}
