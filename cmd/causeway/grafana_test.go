package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/causeway/causeway/edge"
	"github.com/causeway/causeway/edge/client"
	"github.com/causeway/causeway/pipeline"
	"github.com/causeway/causeway/pipeline/devcluster"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// promqlWords are PromQL's functions, aggregations and keywords: every
// other identifier in an expression is a metric name.
var promqlWords = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`sum min max avg count stddev stdvar topk bottomk quantile count_values group
		rate irate increase delta idelta deriv predict_linear resets changes histogram_quantile
		abs ceil floor round clamp clamp_min clamp_max exp ln log2 log10 sqrt sgn timestamp time vector scalar
		absent absent_over_time label_replace label_join sort sort_desc
		avg_over_time min_over_time max_over_time sum_over_time count_over_time last_over_time quantile_over_time
		and or unless by without on ignoring group_left group_right offset bool inf nan`) {
		promqlWords[w] = true
	}
}

var (
	promStrings   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promMatchers  = regexp.MustCompile(`\{[^}]*\}`)
	promRanges    = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping  = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdents    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	labelValuesFn = regexp.MustCompile(`label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)`)
)

// metricNames returns the metric names an expression reads.
func metricNames(expr string) []string {
	if m := labelValuesFn.FindStringSubmatch(expr); m != nil {
		return []string{m[1]}
	}
	e := promStrings.ReplaceAllString(expr, " ")
	e = promMatchers.ReplaceAllString(e, " ")
	e = promRanges.ReplaceAllString(e, " ")
	e = promGrouping.ReplaceAllString(e, " ")
	var out []string
	for _, id := range promIdents.FindAllString(e, -1) {
		if !promqlWords[id] {
			out = append(out, id)
		}
	}
	return out
}

func TestGrafanaMetricNames(t *testing.T) {
	t.Parallel()
	for expr, want := range map[string]string{
		`sum by (code) (rate(causeway_edge_errors_total{job=~"$edge_job"}[$__rate_interval]))`: "causeway_edge_errors_total",
		`histogram_quantile(0.99, sum by (le) (rate(x_seconds_bucket[5m])))`:                   "x_seconds_bucket",
		`up{job=~"a|b"}`: "up",
		`label_values(up{job=~"$edge_job"}, instance)`:                             "up",
		`sum(rate(a_total[1m])) / ignoring(outcome) sum(rate(b_total{x="y"}[1m]))`: "a_total b_total",
	} {
		if got := strings.Join(metricNames(expr), " "); got != want {
			t.Errorf("metricNames(%s) = %q, want %q", expr, got, want)
		}
	}
}

// scrapeFamilies returns the metric families an exposition lists.
func scrapeFamilies(t *testing.T, url string, into map[string]bool) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			into[f[2]] = true
		}
	}
}

// TestGrafanaDashboard checks deploy/grafana/causeway.json: valid JSON
// with well-formed panels, and every metric its queries read is one the
// binary exports, as scraped from a running cluster's edges and
// sequencer after traffic that makes every labelled series appear.
func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	var dash struct {
		UID, Title string
		Panels     []struct {
			ID         int
			Type       string
			Title      string
			Datasource map[string]string
			GridPos    struct{ H, W, X, Y int }
			Targets    []struct {
				Expr       string
				Datasource map[string]string
			}
		}
		Templating struct {
			List []struct {
				Name, Type string
				Query      any
			}
		}
	}
	raw := readFile(t, "../../deploy/grafana/causeway.json")
	if err := json.Unmarshal([]byte(raw), &dash); err != nil {
		t.Fatalf("causeway.json: %v", err)
	}
	if dash.UID == "" || dash.Title == "" || len(dash.Panels) < 10 {
		t.Fatalf("dashboard uid %q title %q with %d panels", dash.UID, dash.Title, len(dash.Panels))
	}
	used := map[string][]string{} // metric -> panels
	ids := map[int]bool{}
	vars := map[string]bool{}
	for _, v := range dash.Templating.List {
		vars[v.Name] = true
		if q, ok := v.Query.(map[string]any); ok {
			for _, m := range metricNames(q["query"].(string)) {
				used[m] = append(used[m], "variable "+v.Name)
			}
		}
	}
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W < 1 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H < 1 {
			t.Errorf("panel %q: grid position %+v outside the 24 columns", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 || p.Datasource["uid"] != "${datasource}" {
			t.Errorf("panel %q: %d queries, datasource %v", p.Title, len(p.Targets), p.Datasource)
		}
		for _, tg := range p.Targets {
			names := metricNames(tg.Expr)
			if len(names) == 0 {
				t.Errorf("panel %q: query %q reads no metric", p.Title, tg.Expr)
			}
			for _, m := range names {
				used[m] = append(used[m], p.Title)
			}
			for _, v := range regexp.MustCompile(`\$([a-z_]+)`).FindAllStringSubmatch(tg.Expr, -1) {
				if !vars[v[1]] && !strings.HasPrefix(v[1], "__") {
					t.Errorf("panel %q: $%s is not a dashboard variable", p.Title, v[1])
				}
			}
		}
	}

	exported := exportedMetrics(t)
	// up is Prometheus's own series about its targets.
	exported["up"] = true
	var missing, unused []string
	for m, panels := range used {
		base := m
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(m, suf); ok && exported[b] {
				base = b // a histogram's series
			}
		}
		if base != m {
			used[base] = append(used[base], panels...)
		}
		if !exported[base] {
			missing = append(missing, m+" (in "+strings.Join(panels, ", ")+")")
		}
	}
	for m := range exported {
		if used[m] == nil {
			unused = append(unused, m)
		}
	}
	sort.Strings(missing)
	sort.Strings(unused)
	if len(missing) > 0 {
		t.Errorf("the dashboard reads metrics the binary does not export:\n  %s", strings.Join(missing, "\n  "))
	}
	if len(unused) > 0 {
		t.Logf("exported metrics no panel shows yet: %s", strings.Join(unused, ", "))
	}
}

// exportedMetrics runs a cluster, makes every labelled series appear
// (frames of several types, an error frame, undecodable records for the
// edge and the sequencer), and returns the metric families of its edges'
// /metrics and its sequencer's registry.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	secret := []byte(e2eSecret)
	seqReg, rollReg := prometheus.NewRegistry(), prometheus.NewRegistry()
	cl := devcluster.StartTest(t, 1, secret, func(c *devcluster.Config) {
		c.Sequencer.Registerer, c.Rollup.Registerer = seqReg, rollReg
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := edge.Mint(secret, "ann", []string{"room-*"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(ctx, cl.URL(0), tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Join(ctx, "room-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(ctx, "room-1", "m1", "hi"); err != nil {
		t.Fatal(err)
	}
	// A join outside the token's patterns: the edge answers it with an
	// error frame itself, which is what causeway_edge_errors_total counts.
	if err := c.Join(ctx, "lobby"); err == nil {
		t.Fatal("join outside the token's groups succeeded")
	}
	l := pipeline.DefaultLayout()
	prod, err := kgo.NewClient(kgo.SeedBrokers(cl.Broker.Addr()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	garbage := []byte("not protobuf \xff")
	for _, r := range []*kgo.Record{
		{Topic: l.GroupTopic, Partition: pipeline.PartitionFor("room-1", l.GroupPartitions), Key: []byte("room-1"), Value: garbage},
		{Topic: l.DeliveryTopic, Partition: pipeline.PartitionFor("edge-1", l.DeliveryPartitions), Key: []byte("edge-1"), Value: garbage},
	} {
		if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	// The rollup's lag appears with its first fetch, which the broker
	// holds up to rollup.commit_interval.
	want := []string{"causeway_edge_errors_total", "causeway_records_undecodable_total", "causeway_sequencer_transactions_total", "causeway_rollup_lag_records"}
	for {
		names := map[string]bool{}
		scrapeFamilies(t, "http://"+cl.Edges[0].Addr()+"/metrics", names)
		edgeUndecodable := names["causeway_records_undecodable_total"]
		fams, err := seqReg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		seqUndecodable := false
		for _, f := range fams {
			names[f.GetName()] = true
			seqUndecodable = seqUndecodable || f.GetName() == "causeway_records_undecodable_total"
		}
		rfams, err := rollReg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range rfams {
			names[f.GetName()] = true
		}
		all := edgeUndecodable && seqUndecodable
		for _, w := range want {
			all = all && names[w]
		}
		if all {
			return names
		}
		if ctx.Err() != nil {
			t.Fatalf("series did not appear: have %v (undecodable on the edge %v, the sequencer %v)", names, edgeUndecodable, seqUndecodable)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
