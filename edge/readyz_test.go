package edge_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/causeway/causeway/edge/client"
	"github.com/causeway/causeway/pipeline/devcluster"
)

func status(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// /readyz is 200 while the edge can produce and consumes its deliveries,
// and 503 once Kafka is gone; /healthz stays 200, and a request the edge
// cannot write is answered `unavailable`.
func TestReadyz(t *testing.T) {
	cl := startCluster(t, 1, func(c *devcluster.Config) {
		c.Edge.HeartbeatInterval = 200 * time.Millisecond
		c.Edge.ProduceTimeout = time.Second
	})
	addr := cl.Edges[0].Addr()
	a := dial(t, cl.URL(0), "ann", "room-*")
	joinSub(t, a, "room-r")
	if got := status(t, "http://"+addr+"/readyz"); got != 200 {
		t.Fatalf("readyz = %d with Kafka up, want 200", got)
	}
	cl.Broker.Close()
	deadline := time.Now().Add(15 * time.Second)
	for status(t, "http://"+addr+"/readyz") != 503 {
		if time.Now().After(deadline) {
			t.Fatal("readyz still 200 15s after the broker stopped")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := status(t, "http://"+addr+"/healthz"); got != 200 {
		t.Fatalf("healthz = %d, want 200", got)
	}
	var ce *client.Error
	if _, err := a.Send(ctxT(t, 10*time.Second), "room-r", "down-1", "x"); !asCode(err, &ce, "unavailable") {
		t.Fatalf("send with Kafka down: %v, want unavailable", err)
	}
}
