package edge_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/causeway/causeway/edge"
	"github.com/causeway/causeway/edge/client"
	"github.com/causeway/causeway/pipeline/devcluster"
)

var testSecret = []byte("integration-test-secret-0123456789abcdef")

// startCluster runs broker, sequencer and n edges in-process; the broker
// is a real Kafka-protocol server on loopback TCP.
func startCluster(t *testing.T, n int, tweak func(*devcluster.Config)) *devcluster.Cluster {
	t.Helper()
	return devcluster.StartTest(t, n, testSecret, tweak)
}

func token(t *testing.T, user string, groups ...string) string {
	t.Helper()
	tok, err := edge.Mint(testSecret, user, groups, time.Hour, time.Now())
	if err != nil {
		t.Fatalf("mint token: %v", err)
	}
	return tok
}

func dial(t *testing.T, url, user string, groups ...string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url, token(t, user, groups...), nil)
	if err != nil {
		t.Fatalf("dial %s as %s: %v", url, user, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// joinSub joins and subscribes c to g.
func joinSub(t *testing.T, c *client.Client, g string) client.Frame {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	if err := c.Join(ctx, g); err != nil {
		t.Fatalf("%s join %s: %v", c.User(), g, err)
	}
	f, err := c.Subscribe(ctx, g, nil)
	if err != nil {
		t.Fatalf("%s subscribe %s: %v", c.User(), g, err)
	}
	return f
}

// next returns the next event frame of one of the given types, skipping
// others, or fails after d.
func next(t *testing.T, c *client.Client, d time.Duration, types ...string) client.Frame {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case f, ok := <-c.Events():
			if !ok {
				t.Fatalf("%s: connection ended while waiting for %v: %v", c.User(), types, c.Err())
			}
			for _, ty := range types {
				if f.Type == ty {
					return f
				}
			}
		case <-timer.C:
			t.Fatalf("%s: no %v frame within %s", c.User(), types, d)
		}
	}
}

// collectMsgs reads msg frames of group g until n arrived.
func collectMsgs(t *testing.T, c *client.Client, g string, n int, d time.Duration) []client.Frame {
	t.Helper()
	var out []client.Frame
	deadline := time.After(d)
	for len(out) < n {
		select {
		case f, ok := <-c.Events():
			if !ok {
				t.Fatalf("%s: connection ended after %d/%d msgs: %v", c.User(), len(out), n, c.Err())
			}
			if f.Type == "msg" && f.Group == g {
				out = append(out, f)
			}
		case <-deadline:
			t.Fatalf("%s: got %d of %d msgs within %s", c.User(), len(out), n, d)
		}
	}
	return out
}

func body(s string) string { return fmt.Sprintf("%q", s) }

// mintAt signs a token issued at iat for ttl.
func mintAt(iat time.Time, ttl time.Duration) (string, error) {
	return edge.Mint(testSecret, "late", []string{"room-*"}, ttl, iat)
}

// acquaint makes the users of cs members of group, so that the default
// reach policy (shared_group) lets them signal each other and see each
// other's presence. Their tokens must allow joining group.
func acquaint(t *testing.T, group string, cs ...*client.Client) {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	for _, c := range cs {
		if err := c.Join(ctx, group); err != nil {
			t.Fatalf("%s join %s: %v", c.User(), group, err)
		}
	}
}
