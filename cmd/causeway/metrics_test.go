package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/causeway/causeway/edge"
	"github.com/causeway/causeway/edge/client"
)

// scrapeAll reads a /metrics page into series -> value (summed over
// labels per metric name too, under the bare name).
func scrapeAll(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		series := line[:i]
		out[series] = v
		name := series
		if j := strings.IndexByte(series, '{'); j >= 0 {
			name = series[:j]
		}
		if name != series {
			out[name] += v
		}
	}
	return out
}

// Every role serves Prometheus metrics, and the series an operator needs
// exist and move with traffic; pprof is served only when admin.pprof is on.
func TestMetricsEveryRole(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	env := []string{"CAUSEWAY_AUTH_SECRET=" + e2eSecret, "CAUSEWAY_TOPICS_GROUP_PARTITIONS=2", "CAUSEWAY_TOPICS_DELIVERY_PARTITIONS=2"}
	baddr := freePort(t)
	br := start(t, dir, "broker", env, "broker", "--listen", baddr)
	br.waitAddr(t)
	seqAddr, rollAddr, edgeAddr, adminAddr := freePort(t), freePort(t), freePort(t), freePort(t)
	start(t, dir, "sequencer", env, "sequencer", "--brokers", baddr, "--id", "s1", "--metrics-addr", seqAddr)
	start(t, dir, "rollup", append(env, "CAUSEWAY_ADMIN_PPROF=true", "CAUSEWAY_ROLLUP_CLICKHOUSE=false"), "rollup", "--brokers", baddr, "--id", "r1", "--metrics-addr", rollAddr)
	start(t, dir, "edge", append(env, "CAUSEWAY_ADMIN_PPROF=true"), "edge", "--brokers", baddr, "--id", "edge-1", "--http-addr", edgeAddr, "--admin-addr", adminAddr)
	waitReady(t, edgeAddr)
	for _, a := range []string{seqAddr, rollAddr} {
		waitHealthy(t, a)
	}
	before := map[string]map[string]float64{"edge": scrapeAll(t, edgeAddr), "sequencer": scrapeAll(t, seqAddr), "rollup": scrapeAll(t, rollAddr)}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dial := func(user string) *client.Client {
		tok, err := edge.Mint([]byte(e2eSecret), user, []string{"room-*"}, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.Dial(ctx, "ws://"+edgeAddr+"/v1/ws", tok, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	ann, ben := dial("ann"), dial("ben")
	for _, c := range []*client.Client{ann, ben} {
		if err := c.Join(ctx, "room-m"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Subscribe(ctx, "room-m", nil); err != nil {
			t.Fatal(err)
		}
	}
	var last uint64
	for i := range 5 {
		seq, err := ann.Send(ctx, "room-m", fmt.Sprint("m", i), "hi")
		if err != nil {
			t.Fatal(err)
		}
		last = seq
	}
	if err := ben.Read(ctx, "room-m", last); err != nil {
		t.Fatal(err)
	}
	_ = ben.Read(ctx, "room-nope", 1) // an error, counted by code
	// The summary reaching ann proves the rollup ran.
	for f := range ann.Events() {
		if f.Type == "receipts" {
			break
		}
	}

	moved := map[string][]string{
		"edge": {"causeway_edge_connections", "causeway_edge_frames_in_total", "causeway_edge_frames_out_total",
			"causeway_edge_errors_total", "causeway_edge_deliveries_total", "causeway_edge_produce_seconds_count",
			"causeway_edge_delivery_latency_seconds_count"},
		"sequencer": {"causeway_sequencer_records_total", "causeway_sequencer_deliveries_total",
			"causeway_sequencer_transactions_total", "causeway_sequencer_groups", "causeway_sequencer_transaction_seconds_count"},
		"rollup": {"causeway_rollup_records_total", "causeway_rollup_summaries_total", "causeway_rollup_transactions_total", "causeway_rollup_groups"},
	}
	present := map[string][]string{
		"edge":      {"causeway_edge_slow_consumer_disconnects_total", "causeway_edge_sessions_detached_total", "causeway_edge_delivery_lag_records"},
		"sequencer": {"causeway_sequencer_lag_records"},
		"rollup":    {"causeway_rollup_lag_records"},
	}
	addrs := map[string]string{"edge": edgeAddr, "sequencer": seqAddr, "rollup": rollAddr}
	for role, names := range moved {
		after := scrapeAll(t, addrs[role])
		for _, n := range names {
			if _, ok := after[n]; !ok {
				t.Errorf("%s: no series %s", role, n)
			} else if after[n] <= before[role][n] {
				t.Errorf("%s: %s did not move (%v -> %v)", role, n, before[role][n], after[n])
			}
		}
		for _, n := range present[role] {
			if _, ok := after[n]; !ok {
				t.Errorf("%s: no series %s", role, n)
			}
		}
	}
	if code := httpStatus(t, "http://"+rollAddr+"/debug/pprof/"); code != 200 {
		t.Errorf("rollup pprof with admin.pprof on: %d", code)
	}
	if code := httpStatus(t, "http://"+adminAddr+"/debug/pprof/"); code != 200 {
		t.Errorf("edge pprof on its admin address: %d", code)
	}
	if code := httpStatus(t, "http://"+edgeAddr+"/debug/pprof/"); code == 200 {
		t.Errorf("edge pprof on the public address")
	}
	if _, ok := scrapeAll(t, adminAddr)["causeway_edge_connections"]; !ok {
		t.Errorf("edge admin address serves no edge metrics")
	}
	if code := httpStatus(t, "http://"+adminAddr+"/readyz"); code != 200 {
		t.Errorf("edge admin readyz: %d", code)
	}
	if code := httpStatus(t, "http://"+seqAddr+"/debug/pprof/"); code != 404 {
		t.Errorf("sequencer pprof with admin.pprof off: %d, want 404", code)
	}
}

func httpStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func waitHealthy(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not healthy", addr)
}
