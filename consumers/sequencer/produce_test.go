package sequencer_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/causeway/causeway/consumers/sequencer"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A transaction's records reach the broker in one produce request, however
// many partitions and records it writes: the sequencer holds them until it
// ends the transaction (fewer requests for the broker and the client).
func TestOneProduceRequestPerTransaction(t *testing.T) {
	h := newHarness(t)
	var requests, batches atomic.Int64
	cluster := h.broker.Cluster()
	cluster.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		req := kreq.(*kmsg.ProduceRequest)
		if req.TransactionID != nil && strings.HasPrefix(*req.TransactionID, "causeway-sequencer-") {
			requests.Add(1)
			for _, tp := range req.Topics {
				batches.Add(int64(len(tp.Partitions)))
			}
		}
		return nil, nil, false
	})
	reg := prometheus.NewRegistry()
	// A long linger puts a burst of sends to many groups (over every
	// group partition) into few transactions of many records.
	h.startWith("hold", reg, func(c *sequencer.Config) { c.Linger = 300 * time.Millisecond })
	const groups, sends = 8, 5
	want := map[string]uint64{}
	for g := range groups {
		group := fmt.Sprint("g", g)
		h.produce(group, member("u", "join"))
		h.produce(group, member("u", "attach"))
		want[group] = 1 + sends // the join is seq 1; an attach takes none
	}
	for i := range sends {
		for g := range groups {
			h.produce(fmt.Sprint("g", g), sendEv("u", fmt.Sprint("m", i)))
		}
	}
	checkExactlyOnce(t, h.collect(want, 30*time.Second), want)
	outcomes := txnOutcomes(t, reg)
	committed := outcomes["committed"]
	n, b := requests.Load(), batches.Load()
	t.Logf("transactions %v, %d produce requests, %d partition batches", outcomes, n, b)
	// One request may be retried: a transaction's first produce can meet
	// the previous one's markers still being written (CONCURRENT_TRANSACTIONS).
	// Without the hold, this burst takes two to three requests per
	// transaction.
	if committed == 0 || float64(n) > committed+1 {
		t.Errorf("%d produce requests for %v committed transactions, want one each", n, committed)
	}
	if float64(b) <= committed {
		t.Errorf("%d partition batches in %v transactions: the burst should write several partitions per transaction", b, committed)
	}
}
