package edge_test

import (
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/causeway/causeway/edge"
	"github.com/causeway/causeway/pipeline"
	"github.com/causeway/causeway/schemas"
	pb "github.com/causeway/causeway/schemas/causewaypb"
)

// When the sequencer expires a session's attachment (its edge's heartbeats
// stopped reaching Kafka), the edge closes the session with going_away so
// the client resubscribes, instead of leaving it connected and silently
// cut off from the group; other sessions on the edge are untouched.
func TestDetachedSessionIsClosedWithGoingAway(t *testing.T) {
	cl := startCluster(t, 1, nil)
	ctx := ctxT(t, 30*time.Second)
	victim := dial(t, cl.URL(0), "ann", "room-*")
	joinSub(t, victim, "room-d")
	other := dial(t, cl.URL(0), "ben", "room-*")
	joinSub(t, other, "room-d")

	// What the sequencer writes on expiry, produced for real to the
	// edge's delivery slot.
	id := "edge-1" // devcluster names edges edge-1..n
	v, err := proto.Marshal(&pb.Delivery{Version: schemas.Version, Edge: id, Group: "room-d", Replies: []*pb.Reply{{
		Session: victim.Session(),
		Kind:    &pb.Reply_Detached{Detached: &pb.Detached{Group: "room-d", Reason: "edge heartbeat timed out"}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	layout := edge.DefaultConfig().Layout // devcluster keeps the default layout
	kc, err := kgo.NewClient(kgo.SeedBrokers(cl.Broker.Addr()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	rec := &kgo.Record{Topic: layout.DeliveryTopic, Partition: pipeline.PartitionFor(id, layout.DeliveryPartitions), Key: []byte(id), Value: v}
	if err := kc.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatalf("produce the notice: %v", err)
	}

	select {
	case <-victim.Done():
	case <-ctx.Done():
		t.Fatal("the detached session was not closed")
	}
	if code := websocket.CloseStatus(victim.Err()); code != 4000 {
		t.Fatalf("detached session closed with %v (status %d), want 4000", victim.Err(), code)
	}
	if n := scrape(t, cl.Edges[0].Addr(), "causeway_edge_sessions_detached_total"); n != 1 {
		t.Fatalf("sessions detached = %v, want 1", n)
	}
	// The other session still receives.
	if _, err := other.Send(ctx, "room-d", "after", "still here"); err != nil {
		t.Fatalf("other session: %v", err)
	}
	collectMsgs(t, other, "room-d", 1, 10*time.Second)
}
