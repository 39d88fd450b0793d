package procs

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/causeway/causeway/pipeline"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ClusterConfig is a split cluster on loopback: every role in a
// `causeway` process of its own.
type ClusterConfig struct {
	Edges, Sequencers int
	// Rollup runs `causeway rollup` as `causeway dev` does (its ClickHouse
	// sink off: NoAnalytics).
	Rollup bool
	// Env is added to every process's environment.
	Env []string
}

// Cluster is a started split cluster: `causeway broker` (data dir on
// disk, as `causeway dev`), sequencers seq-1..N, the rollup, edges
// edge-1..M.
type Cluster struct {
	Brokers string
	Secret  string
	// URLs are the edges' WebSocket URLs, in edge order.
	URLs []string
	// Procs in start order; each Proc.Name is its role and index
	// (broker, seq-1, rollup, edge-1, ...).
	Procs []*Proc
	// Metrics are the http://host:port of every sequencer's and the
	// rollup's /metrics (the edges serve theirs on their URLs' hosts).
	Metrics []string
	// SeqAdmin are the sequencers' admin bases (/metrics, /debug/pprof/).
	SeqAdmin []string
}

// StartCluster starts a split cluster with its data under dir and waits
// until every edge is ready and every sequencer (and the rollup) owns
// partitions of the group log: a rebalance does not fall into a
// measurement.
func StartCluster(ctx context.Context, bin, dir string, cfg ClusterConfig) (c *Cluster, err error) {
	if cfg.Edges < 1 || cfg.Sequencers < 1 {
		return nil, fmt.Errorf("cluster: need at least one edge and one sequencer")
	}
	c = &Cluster{Secret: DevSecret}
	defer func() {
		if err != nil {
			c.Kill()
			c = nil
		}
	}()
	env := append(append(append([]string{"CAUSEWAY_AUTH_SECRET=" + DevSecret, "CAUSEWAY_LOG_LEVEL=warn"}, NoLimits...), NoAnalytics...), cfg.Env...)
	start := func(name string, env []string, args ...string) (*Proc, error) {
		p, err := Start(name, dir, bin, env, args...)
		if err == nil {
			c.Procs = append(c.Procs, p)
		}
		return p, err
	}
	if c.Brokers, err = FreeAddr(); err != nil {
		return c, err
	}
	b, err := start("broker", env, "broker", "--listen", c.Brokers, "--data-dir", filepath.Join(dir, "broker"))
	if err != nil {
		return c, err
	}
	if _, err := b.WaitLine(ctx, "listening on", 30*time.Second); err != nil {
		return c, err
	}
	// Sequencers serve pprof on their admin address: the suite reads
	// their heap after a GC from it.
	seqEnv := append(append([]string{}, env...), "CAUSEWAY_ADMIN_PPROF=true")
	for i := 1; i <= cfg.Sequencers; i++ {
		addr, err := FreeAddr()
		if err != nil {
			return c, err
		}
		id := fmt.Sprintf("seq-%d", i)
		if _, err := start(id, seqEnv, "sequencer", "--brokers", c.Brokers, "--id", id, "--metrics-addr", addr); err != nil {
			return c, err
		}
		c.Metrics = append(c.Metrics, "http://"+addr)
		c.SeqAdmin = append(c.SeqAdmin, "http://"+addr)
	}
	if cfg.Rollup {
		addr, err := FreeAddr()
		if err != nil {
			return c, err
		}
		if _, err := start("rollup", env, "rollup", "--brokers", c.Brokers, "--id", "rollup-1", "--metrics-addr", addr); err != nil {
			return c, err
		}
		c.Metrics = append(c.Metrics, "http://"+addr)
	}
	for i := 1; i <= cfg.Edges; i++ {
		id := fmt.Sprintf("edge-%d", i)
		p, err := start(id, env, "edge", "--brokers", c.Brokers, "--id", id, "--http-addr", "127.0.0.1:0")
		if err != nil {
			return c, err
		}
		// "edge edge-1 listening on ws://127.0.0.1:PORT/v1/ws"
		l, err := p.WaitLine(ctx, "listening on ws://", 60*time.Second)
		if err != nil {
			return c, err
		}
		c.URLs = append(c.URLs, l[strings.Index(l, "ws://"):])
	}
	for _, u := range c.URLs {
		if err := WaitReady(ctx, u, 60*time.Second); err != nil {
			return c, err
		}
	}
	for _, base := range c.Metrics {
		if err := waitHTTP(ctx, base+"/healthz", 30*time.Second); err != nil {
			return c, err
		}
	}
	l := pipeline.DefaultLayout()
	groups := map[string]GroupWant{"causeway-sequencer": {cfg.Sequencers, l.GroupTopic}}
	if cfg.Rollup {
		groups["causeway-rollup"] = GroupWant{1, l.StateTopic} // it reads the sequencer changelog
	}
	return c, WaitGroups(ctx, c.Brokers, groups, 60*time.Second)
}

// PIDs are name=pid of every process, for loadgen's -pids.
func (c *Cluster) PIDs() string {
	var s []string
	for _, p := range c.Procs {
		s = append(s, p.Name+"="+strconv.Itoa(p.PID()))
	}
	return strings.Join(s, ",")
}

// Stop stops the processes in reverse start order (edges first, broker
// last), each with grace before a SIGKILL.
func (c *Cluster) Stop(grace time.Duration) {
	for i := len(c.Procs) - 1; i >= 0; i-- {
		c.Procs[i].Stop(grace)
	}
}

// Kill SIGKILLs every process.
func (c *Cluster) Kill() {
	for i := len(c.Procs) - 1; i >= 0; i-- {
		c.Procs[i].Kill()
	}
}

func waitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if resp, err := hc.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("%s never answered 200", url)
}

// GroupWant is what WaitGroups waits for in a consumer group: Members
// members sharing every partition of Topic (a topic of the default
// layout, with its group-log partition count).
type GroupWant struct {
	Members int
	Topic   string
}

// WaitGroups waits until each Kafka consumer group is Stable with the
// members it wants and every partition of its topic assigned, each member
// holding some when there are enough partitions.
func WaitGroups(ctx context.Context, brokers string, groups map[string]GroupWant, timeout time.Duration) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	l := pipeline.DefaultLayout()
	deadline := time.Now().Add(timeout)
	last := "not described yet"
	for time.Now().Before(deadline) && ctx.Err() == nil {
		names := make([]string, 0, len(groups))
		for g := range groups {
			names = append(names, g)
		}
		ds, err := adm.DescribeGroups(ctx, names...)
		ok := err == nil
		if err != nil {
			last = err.Error()
		}
		for _, d := range ds {
			want := groups[d.Group].Members
			assigned := d.AssignedPartitions()[groups[d.Group].Topic]
			idle := 0
			for _, m := range d.Members {
				if c, isC := m.Assigned.AsConsumer(); !isC || len(c.Topics) == 0 {
					idle++
				}
			}
			if d.State != "Stable" || len(d.Members) != want || int32(len(assigned)) != l.GroupPartitions ||
				(want <= int(l.GroupPartitions) && idle > 0) {
				ok = false
				last = fmt.Sprintf("%s: %s, %d of %d members, %d of %d partitions assigned, %d members without partitions",
					d.Group, d.State, len(d.Members), want, len(assigned), l.GroupPartitions, idle)
			}
		}
		if ok && len(ds) == len(groups) {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("consumer groups not settled within %s (%s)", timeout, last)
}

// HeapInuse runs a GC in the Go process serving pprof at base
// (/debug/pprof/heap?gc=1) and returns its HeapInuse in bytes.
func HeapInuse(base string) (int64, error) {
	hc := &http.Client{Timeout: 30 * time.Second}
	resp, err := hc.Get(base + "/debug/pprof/heap?debug=1&gc=1")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s/debug/pprof/heap: %s", base, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "# HeapInuse = "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s/debug/pprof/heap: no HeapInuse", base)
}

// ScrapeMetrics reads /metrics of every base (http://host:port) and sums
// the samples by name and labels; a base that does not answer is left out.
func ScrapeMetrics(bases ...string) map[string]float64 {
	sum := map[string]float64{}
	hc := &http.Client{Timeout: 2 * time.Second}
	for _, base := range bases {
		resp, err := hc.Get(base + "/metrics")
		if err != nil {
			continue
		}
		b, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			continue
		}
		for k, v := range ParseMetrics(b) {
			sum[k] += v
		}
	}
	return sum
}

// ParseMetrics reads the Prometheus text format: "name{labels} value".
func ParseMetrics(b []byte) map[string]float64 {
	out := map[string]float64{}
	for _, l := range strings.Split(string(b), "\n") {
		if l == "" || l[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i <= 0 {
			continue
		}
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			continue
		}
		out[l[:i]] += v
	}
	return out
}
