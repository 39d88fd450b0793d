package edge_test

import (
	"testing"
	"time"
)

// A refusal decided by the sequencer (not_member) is counted once in
// causeway_edge_errors_total, like the edge's own refusals: dashboards and
// alerts on refusal rates would otherwise read double.
func TestSequencerRefusalCountedOnce(t *testing.T) {
	cl := startCluster(t, 1, nil)
	c := dial(t, cl.URL(0), "outsider", "room-*")
	ctx := ctxT(t, 20*time.Second)
	series := `causeway_edge_errors_total{code="not_member"}`
	before := scrape(t, cl.Edges[0].Addr(), series)
	for i := range 3 {
		if _, err := c.Send(ctx, "room-closed", "m"+itoa(i), "hi"); err == nil {
			t.Fatal("a send to a group the user never joined was accepted")
		}
	}
	if got := scrape(t, cl.Edges[0].Addr(), series) - before; got != 3 {
		t.Fatalf("3 not_member refusals counted as %v", got)
	}
}
