package devcluster_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/causeway/causeway/consumers/rollup"
	"github.com/causeway/causeway/edge"
	"github.com/causeway/causeway/edge/client"
	"github.com/causeway/causeway/pipeline"
	"github.com/causeway/causeway/pipeline/devcluster"
)

var secret = []byte("devcluster-security-secret-0123456789")

// memWriter is an analytics store in memory.
type memWriter struct {
	mu   sync.Mutex
	msgs map[uint64]bool
}

func (w *memWriter) Write(_ context.Context, b rollup.Batch) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range b.Messages {
		if m.Group == "room-sec" {
			w.msgs[m.Seq] = true
		}
	}
	return nil
}

func (w *memWriter) has(seq uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.msgs[seq]
}

// The whole cluster over SCRAM-SHA-256 and TLS: the broker accepts only
// TLS connections that authenticate, so a message sent through one edge
// reaching a subscriber on the other means every edge and the sequencer
// got in; the read it answers coming back as a receipts summary means the
// rollup did; the message reaching the analytics writer means the sink did.
func TestClusterOverSASLAndTLS(t *testing.T) {
	t.Parallel()
	pki := devcluster.NewTestPKI(t)
	w := &memWriter{msgs: map[uint64]bool{}}
	cl := devcluster.StartTest(t, 2, secret, func(c *devcluster.Config) {
		c.Broker.Users = []pipeline.BrokerUser{{Mechanism: "scram-sha-256", Username: "causeway", Password: "s3cret-pass"}}
		c.Broker.TLSCertFile, c.Broker.TLSKeyFile = pki.ServerCert, pki.ServerKey
		c.Analytics = &rollup.SinkConfig{GroupID: "causeway-rollup-sink", Writer: w, MaxRows: 100, FlushEvery: 100 * time.Millisecond}
		c.SetKafkaSecurity(
			pipeline.KafkaSASL{Mechanism: "scram-sha-256", Username: "causeway", Password: "s3cret-pass"},
			pipeline.KafkaTLS{Enabled: true, CAFile: pki.CAFile})
	})
	if !cl.Broker.TLS() || !cl.Broker.SASL() {
		t.Fatalf("broker TLS %v SASL %v, want both", cl.Broker.TLS(), cl.Broker.SASL())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dial := func(url, user string) *client.Client {
		tok, err := edge.Mint(secret, user, []string{"room-*"}, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.Dial(ctx, url, tok, nil)
		if err != nil {
			t.Fatalf("dial %s as %s: %v", url, user, err)
		}
		t.Cleanup(func() { _ = c.Close() })
		if err := c.Join(ctx, "room-sec"); err != nil {
			t.Fatalf("%s join: %v", user, err)
		}
		if _, err := c.Subscribe(ctx, "room-sec", nil); err != nil {
			t.Fatalf("%s subscribe: %v", user, err)
		}
		return c
	}
	next := func(c *client.Client, typ string, ok func(client.Frame) bool) client.Frame {
		t.Helper()
		for {
			select {
			case f, open := <-c.Events():
				if !open {
					t.Fatalf("%s: connection ended: %v", c.User(), c.Err())
				}
				if f.Type == typ && ok(f) {
					return f
				}
			case <-ctx.Done():
				t.Fatalf("%s: no %s frame", c.User(), typ)
			}
		}
	}
	alice, bob := dial(cl.URL(0), "alice"), dial(cl.URL(1), "bob")
	seq, err := alice.Send(ctx, "room-sec", "m1", "over TLS and SCRAM")
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	f := next(bob, "msg", func(f client.Frame) bool { return f.Seq == seq })
	if f.From != "alice" || string(f.Body) != `"over TLS and SCRAM"` {
		t.Fatalf("bob got %s", f.Raw)
	}
	if err := bob.Read(ctx, "room-sec", seq); err != nil {
		t.Fatalf("read: %v", err)
	}
	next(alice, "receipts", func(f client.Frame) bool {
		var r struct{ Reads []struct{ Seq, Count uint64 } }
		_ = json.Unmarshal(f.Raw, &r)
		for _, x := range r.Reads {
			if x.Seq == seq && x.Count == 1 {
				return true
			}
		}
		return false
	})
	for !w.has(seq) {
		select {
		case <-ctx.Done():
			t.Fatal("the analytics sink never wrote the message")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// A role with a wrong password, or one that does not trust the broker's
// certificate, stops Start at once with an error naming the role and what
// to check, instead of a cluster that never gets ready.
func TestClusterRefusesBadKafkaCredentials(t *testing.T) {
	t.Parallel()
	pki, rogue := devcluster.NewTestPKI(t), devcluster.NewTestPKI(t)
	users := []pipeline.BrokerUser{{Mechanism: "scram-sha-256", Username: "causeway", Password: "right"}}
	good := pipeline.KafkaSASL{Mechanism: "scram-sha-256", Username: "causeway", Password: "right"}
	tlsOn := pipeline.KafkaTLS{Enabled: true, CAFile: pki.CAFile}
	tests := []struct {
		name string
		edit func(*devcluster.Config)
		want []string
	}{
		{"wrong password for the sequencer", func(c *devcluster.Config) {
			c.SetKafkaSecurity(good, tlsOn)
			c.Sequencer.Kafka.SASL.Password = "wrong"
		}, []string{"causeway-sequencer", "SASL SCRAM-SHA-256 authentication as \"causeway\" failed", "kafka.sasl.password"}},
		{"wrong password everywhere", func(c *devcluster.Config) {
			c.SetKafkaSecurity(pipeline.KafkaSASL{Mechanism: "scram-sha-256", Username: "causeway", Password: "wrong"}, tlsOn)
		}, []string{"causeway-edge", "authentication as \"causeway\" failed"}},
		{"no SASL", func(c *devcluster.Config) { c.SetKafkaSecurity(pipeline.KafkaSASL{}, tlsOn) },
			[]string{"may require SASL"}},
		{"unknown CA", func(c *devcluster.Config) {
			c.SetKafkaSecurity(good, pipeline.KafkaTLS{Enabled: true, CAFile: rogue.CAFile})
		}, []string{"not signed by a trusted CA", "unknown authority"}},
		{"roles without TLS", func(c *devcluster.Config) { c.SetKafkaSecurity(good, pipeline.KafkaTLS{}) },
			[]string{"the embedded broker serves TLS but kafka.tls.enabled is false"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := devcluster.DefaultConfig(1, secret)
			cfg.Broker.Users = users
			cfg.Broker.TLSCertFile, cfg.Broker.TLSKeyFile = pki.ServerCert, pki.ServerKey
			tt.edit(&cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			cl, err := devcluster.Start(ctx, cfg)
			if err == nil {
				_ = cl.Close()
				t.Fatal("cluster started")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("refused after %s", d)
			}
			t.Logf("%v", err)
		})
	}
	cfg := devcluster.DefaultConfig(1, secret)
	cfg.SetKafkaSecurity(good, tlsOn)
	if cl, err := devcluster.Start(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "kafka.tls.enabled is true but the embedded broker has no TLS certificate") {
		if cl != nil {
			_ = cl.Close()
		}
		t.Errorf("roles with TLS, broker without: %v", err)
	}
}
