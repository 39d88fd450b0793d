// Package micro holds Go benchmarks of the per-message hot paths (issue 8:
// measure first): what one client frame, one sequenced message and one
// fan-out frame cost in CPU and allocations, without Kafka or sockets.
// `make bench-micro` runs them and writes benchmarks/results/micro-latest.txt.
// The end-to-end figures are the suite's (benchmarks/cmd/suite).
package micro_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/causeway/causeway/consumers/sequencer"
	"github.com/causeway/causeway/edge"
	pb "github.com/causeway/causeway/schemas/causewaypb"
	"google.golang.org/protobuf/proto"
)

// sendFrame is a loadgen send frame: a 200-byte JSON string body.
var sendFrame = []byte(`{"type":"send","id":"r-123456","group":"bench-abc123-g7","client_msg_id":"bench-abc123-g7-m0-4711","body":"` + strings.Repeat("x", 198) + `"}`)

// BenchmarkDecodeSendFrame: the edge's parse and validation of one client
// frame (edge.DecodeClientFrame).
func BenchmarkDecodeSendFrame(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(sendFrame)))
	for b.Loop() {
		if _, ferr := edge.DecodeClientFrame(sendFrame); ferr != nil {
			b.Fatal(ferr)
		}
	}
}

func event(group, user string, i int) *pb.GroupEvent {
	return &pb.GroupEvent{Version: 1, Group: group, User: user, Session: "s-" + user, Edge: fmt.Sprint("edge-", i%2+1), TsMs: 1000}
}

// stateWithGroup is a sequencer partition state holding one group of
// members members, every one attached on one of two edges.
func stateWithGroup(b *testing.B, members int) *sequencer.State {
	st := sequencer.NewState(sequencer.DefaultLimits())
	for i := range members {
		user := fmt.Sprint("u", i)
		j := event("g", user, i)
		j.Kind = &pb.GroupEvent_Join{Join: &pb.Join{}}
		st.Apply(j)
		a := event("g", user, i)
		a.Kind = &pb.GroupEvent_Attach{Attach: &pb.Attach{}}
		st.Apply(a)
	}
	st.TakeWrites()
	return st
}

// BenchmarkSequenceSend: the sequencer applying one send to a group of 2
// and of 100 members on two edges, and encoding what it writes (the
// deliveries, one per edge, and its changelog records), as its loop does
// per record.
func BenchmarkSequenceSend(b *testing.B) {
	for _, members := range []int{2, 100} {
		b.Run(fmt.Sprint("members=", members), func(b *testing.B) {
			st := stateWithGroup(b, members)
			body := []byte(`"` + strings.Repeat("x", 198) + `"`)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				e := event("g", "u0", 0)
				e.RequestId = fmt.Sprint("r", i)
				e.Kind = &pb.GroupEvent_Send{Send: &pb.Send{ClientMsgId: e.RequestId, Body: body}}
				raw, err := proto.Marshal(e)
				if err != nil {
					b.Fatal(err)
				}
				var in pb.GroupEvent
				if err := proto.Unmarshal(raw, &in); err != nil {
					b.Fatal(err)
				}
				out := st.Apply(&in)
				if len(out.Deliveries) != 2 {
					b.Fatalf("%d deliveries, want one per edge", len(out.Deliveries))
				}
				for _, d := range out.Deliveries {
					if _, err := proto.Marshal(d); err != nil {
						b.Fatal(err)
					}
				}
				st.TakeWrites()
			}
		})
	}
}
