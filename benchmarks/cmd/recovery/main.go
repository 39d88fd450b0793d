// Command recovery measures how long the clients of a SIGKILLed edge take
// to be live again, with no gap, on the other edges (issue 3).
//
// It starts real processes from a built causeway binary: a broker, one
// sequencer and three edges on free loopback ports. It connects -clients
// resilient Sessions (edge/client) in groups of -group-size, all joined
// and subscribed, and one publisher Session per group, connected only to
// edges 2 and 3, that sends a message every -interval. After -warmup it
// SIGKILLs edge 1 and, for every client that was on edge 1, measures the
// time from the kill until
//
//   - reconnect: its Session has reconnected (Stats().Reconnects grew), and
//   - live: it has received the first message whose Send started after the
//     kill, having received every seq in between (no gap, no duplicate).
//
// It reports p50/p90/p99/max over those clients, writes JSON to -out and
// kills every process it started.
//
// With -target floor the same clients, groups and publishers run against
// two floor servers (benchmarks/cmd/floor, -floor BIN) instead: floors
// share nothing, so a group lives wholly on one of them (every third group
// on the first, as a third of the clients are on Causeway's edge 1), and
// its members and publisher prefer that floor and fail over to the other.
// After -warmup the first is SIGKILLed; its clients (and its groups'
// publishers) reconnect to the second, already listening, and resubscribe.
// The same times are measured from the kill, with one difference the
// floor forces: it keeps no history, and the second floor numbers a moved
// group from 0, so what was published meanwhile is gone. Those
// resubscribes are answered recovered=false (counted in
// unrecoverable_subscribed, not a failure) and "live" is the first message
// after the kill, gap or not. Duplicates, gaps after the move, send errors
// and clients behind at the end still fail it.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/causeway/causeway/benchmarks/internal/machine"
	"github.com/causeway/causeway/benchmarks/internal/procs"
	"github.com/causeway/causeway/benchmarks/internal/report"
	"github.com/causeway/causeway/edge"
	"github.com/causeway/causeway/edge/client"
)

var (
	binPath    = flag.String("causeway", "", "path to a built causeway binary (empty: go build ./cmd/causeway into a temp dir)")
	nClients   = flag.Int("clients", 1000, "number of client Sessions (members)")
	groupSize  = flag.Int("group-size", 10, "members per group")
	interval   = flag.Duration("interval", 100*time.Millisecond, "one message per group every interval (from the group's publisher)")
	warmup     = flag.Duration("warmup", 5*time.Second, "publishing time before the kill")
	timeout    = flag.Duration("timeout", 60*time.Second, "how long after the kill a client may take to recover")
	settle     = flag.Duration("settle", 15*time.Second, "after publishers stop, how long to wait for every client to reach its group's last acked seq")
	minBackoff = flag.Duration("min-backoff", 0, "SessionConfig.MinBackoff (0: the client default, 50ms)")
	maxBackoff = flag.Duration("max-backoff", 0, "SessionConfig.MaxBackoff (0: the client default, 5s)")
	eventBuf   = flag.Int("event-buffer", 256, "SessionConfig.EventBuffer")
	dialPar    = flag.Int("dial-concurrency", 64, "Sessions connected (and joined, subscribed) at once")
	dataDir    = flag.Bool("broker-data-dir", true, "run the broker with --data-dir in the temp dir (false: in memory)")
	envFlag    = flag.String("env", "", "extra environment for the cluster processes, comma-separated KEY=VALUE (e.g. CAUSEWAY_SEQUENCER_EDGE_TIMEOUT=3s)")
	out        = flag.String("out", "benchmarks/results/recovery-latest.json", "write the JSON report here (empty: do not write)")
	keepLogs   = flag.Bool("keep", false, "keep the temp dir (process logs) instead of removing it")
	sigName    = flag.String("signal", "KILL", "signal sent to edge 1's process group: KILL, or STOP (a hung edge whose sockets stay open)")
	target     = flag.String("target", "causeway", "causeway (broker, sequencer, 3 edges; edge 1 killed) or floor (two floor servers; the first killed, its clients fail over to the second)")
	floorBin   = flag.String("floor", "", "with -target floor: path to a built floor server (empty: go build ./benchmarks/cmd/floor)")
)

var sig syscall.Signal

// proc is one cluster process, in its own process group.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	addr chan string
	done chan struct{}
}

type cluster struct {
	bin, dir string
	env      []string
	procs    []*proc
	baddr    string
	edges    []string // host:port
	edgeIDs  []string
	edgeProc []*proc
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func (c *cluster) start(name string, args ...string) (*proc, error) {
	logPath := filepath.Join(c.dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(c.bin, args...)
	cmd.Env = append(os.Environ(), c.env...)
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, addr: make(chan string, 1), done: make(chan struct{})}
	c.procs = append(c.procs, p)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if i := strings.Index(line, "listening on "); i >= 0 {
				a := strings.TrimPrefix(line[i+len("listening on "):], "ws://")
				a, _, _ = strings.Cut(a, "/")
				select {
				case p.addr <- a:
				default:
				}
			}
		}
	}()
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	return p, nil
}

func (p *proc) waitAddr() error {
	select {
	case <-p.addr:
		return nil
	case <-p.done:
		return fmt.Errorf("%s exited before listening (see %s)", p.name, p.log)
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s did not report its address", p.name)
	}
}

func (p *proc) kill() {
	if p.cmd.Process != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	<-p.done
}

func (c *cluster) stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		c.procs[i].kill()
	}
}

func waitReady(addr string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("edge %s never became ready", addr)
}

func (c *cluster) up(nEdges int) error {
	var err error
	if c.baddr, err = freePort(); err != nil {
		return err
	}
	args := []string{"broker", "--listen", c.baddr}
	if *dataDir {
		args = append(args, "--data-dir", filepath.Join(c.dir, "broker"))
	}
	b, err := c.start("broker", args...)
	if err != nil {
		return err
	}
	if err := b.waitAddr(); err != nil {
		return err
	}
	if _, err := c.start("seq-1", "sequencer", "--brokers", c.baddr, "--id", "seq-1"); err != nil {
		return err
	}
	for i := 0; i < nEdges; i++ {
		addr, err := freePort()
		if err != nil {
			return err
		}
		id := fmt.Sprintf("edge-%d", i+1)
		p, err := c.start(id, "edge", "--brokers", c.baddr, "--id", id, "--http-addr", addr)
		if err != nil {
			return err
		}
		if err := p.waitAddr(); err != nil {
			return err
		}
		c.edges = append(c.edges, addr)
		c.edgeIDs = append(c.edgeIDs, id)
		c.edgeProc = append(c.edgeProc, p)
	}
	for _, a := range c.edges {
		if err := waitReady(a); err != nil {
			return err
		}
	}
	return nil
}

func wsURL(addr string) string { return "ws://" + addr + "/v1/ws" }

// floorHome is the floor (0: the one killed) of group g with -target
// floor: every third group, as a third of the clients are on the edge
// Causeway's run kills.
func floorHome(g int) int {
	if g%3 == 0 {
		return 0
	}
	return 1
}

// member is one client Session in one group.
type member struct {
	user, group string
	home        int
	floor       bool // -target floor: a moved group starts again, no history
	s           *client.Session

	mu        sync.Mutex
	last      uint64 // last timeline seq delivered
	known     bool
	gaps      int
	dups      int
	lost      int // subscribed frames with recovered=false
	killT     time.Time
	lastAtK   uint64 // last seq at the kill
	gapAfterK bool
	liveAt    time.Time // first post-kill message with no gap since the kill
}

// receive tracks the Session's timeline of the member's group.
func (m *member) receive(killNS *atomic.Int64) {
	for f := range m.s.Events() {
		now := time.Now()
		if f.Group != m.group {
			continue
		}
		m.mu.Lock()
		switch f.Type {
		case "subscribed":
			switch {
			case !f.Recovered && m.known && m.floor:
				// The other floor has nothing of before: its seqs
				// start again, and the next msg is the new position.
				m.lost++
				m.known = false
			case !f.Recovered && m.known:
				m.lost++
				if !m.killT.IsZero() {
					m.gapAfterK = true
				}
			}
		case "msg", "member":
			switch {
			case !m.known:
				m.last, m.known = f.Seq, true
			case f.Seq <= m.last:
				m.dups++
			case f.Seq != m.last+1:
				m.gaps++
				if !m.killT.IsZero() {
					m.gapAfterK = true
				}
				m.last = f.Seq
			default:
				m.last = f.Seq
			}
			if k := killNS.Load(); k != 0 && f.Type == "msg" && m.liveAt.IsZero() && !m.killT.IsZero() && !m.gapAfterK {
				if sent, ok := sentAt(f.ClientMsgID); ok && sent > k {
					m.liveAt = now
				}
			}
		}
		m.mu.Unlock()
	}
}

// sentAt decodes a publisher's client_msg_id "p<unix nanos>-<n>".
func sentAt(id string) (int64, bool) {
	if !strings.HasPrefix(id, "p") {
		return 0, false
	}
	s, _, _ := strings.Cut(id[1:], "-")
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil
}

// dist and quant are the suite's shared latency distribution.
type dist = report.Dist

func quant(d []time.Duration) dist { return report.Quantiles(d) }

// Report is the JSON written to -out.
type Report struct {
	Target  string    `json:"target"`
	Time    time.Time `json:"time"`
	Command string    `json:"command"`
	Machine struct {
		CPUs      int    `json:"cpus"`
		CPUModel  string `json:"cpu_model"`
		GoVersion string `json:"go_version"`
		MemTotal  string `json:"mem_total"`
		NoFile    uint64 `json:"rlimit_nofile"`
	} `json:"machine"`
	Config struct {
		Clients     int      `json:"clients"`
		GroupSize   int      `json:"group_size"`
		Groups      int      `json:"groups"`
		IntervalMs  float64  `json:"interval_ms"`
		WarmupSec   float64  `json:"warmup_sec"`
		TimeoutSec  float64  `json:"timeout_sec"`
		MinBackoff  string   `json:"min_backoff"`
		MaxBackoff  string   `json:"max_backoff"`
		EventBuffer int      `json:"event_buffer"`
		Signal      string   `json:"signal"`
		Edges       int      `json:"edges"`
		BrokerDisk  bool     `json:"broker_data_dir"`
		Env         []string `json:"env,omitempty"`
	} `json:"config"`
	SetupSec        float64        `json:"setup_sec"`
	Placement       map[string]int `json:"clients_per_edge_at_kill"`
	Affected        int            `json:"affected_clients"`
	Reconnected     int            `json:"reconnected_within_timeout"`
	Recovered       int            `json:"recovered_within_timeout"`
	NotRecovered    []string       `json:"not_recovered,omitempty"`
	DetectMs        dist           `json:"disconnect_seen_ms"`
	ReconnectMs     dist           `json:"reconnect_ms"`
	LiveMs          dist           `json:"live_no_gap_ms"`
	AllRecoveredSec float64        `json:"all_recovered_sec"`
	Gaps            int            `json:"gaps"`
	Duplicates      int            `json:"duplicates"`
	Unrecoverable   int            `json:"unrecoverable_subscribed"`
	GapClients      int            `json:"clients_with_gap_after_kill"`
	UnaffectedRecon int            `json:"unaffected_clients_reconnected"`
	PublisherRecon  int            `json:"publisher_reconnects"`
	Sent            int64          `json:"sent"`
	SendErrors      int64          `json:"send_errors"`
	SendErrorSample string         `json:"send_error_sample,omitempty"`
	Incomplete      int            `json:"clients_behind_after_settle"`
	SessionStats    map[string]int `json:"affected_session_stats"`
	Pass            bool           `json:"pass"`
	Failures        []string       `json:"failures,omitempty"`
}

func main() {
	flag.Parse()
	switch *sigName {
	case "KILL":
		sig = syscall.SIGKILL
	case "STOP":
		sig = syscall.SIGSTOP
	default:
		fmt.Fprintln(os.Stderr, "recovery: -signal must be KILL or STOP")
		os.Exit(2)
	}
	if *target != "causeway" && *target != "floor" {
		fmt.Fprintln(os.Stderr, "recovery: -target must be causeway or floor")
		os.Exit(2)
	}
	if *target == "floor" && sig != syscall.SIGKILL {
		fmt.Fprintln(os.Stderr, "recovery: -target floor kills a floor: -signal must be KILL")
		os.Exit(2)
	}
	if *nClients < 1 || *groupSize < 1 || *interval <= 0 {
		fmt.Fprintln(os.Stderr, "recovery: -clients, -group-size and -interval must be positive")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	rep, err := bench(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "recovery:", err)
		os.Exit(1)
	}
	printSummary(rep)
	if *out != "" {
		if err := writeJSON(*out, rep); err != nil {
			fmt.Fprintln(os.Stderr, "recovery: write report:", err)
			os.Exit(1)
		}
		fmt.Println("report written to", *out)
	}
	if !rep.Pass {
		os.Exit(1)
	}
}

func raiseNoFile() (uint64, error) { return machine.RaiseNoFile() }

func buildBinary(dir string) (string, error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	bin := filepath.Join(dir, "causeway")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/causeway")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, b)
	}
	return bin, nil
}

func bench(ctx context.Context) (*Report, error) {
	rep := &Report{Target: *target, Time: time.Now().UTC(), Command: strings.Join(os.Args, " ")}
	isFloor := *target == "floor"
	fillMachine(rep)
	nf, err := raiseNoFile()
	if err != nil {
		fmt.Fprintln(os.Stderr, "recovery: raising RLIMIT_NOFILE:", err)
	}
	rep.Machine.NoFile = nf

	dir, err := os.MkdirTemp("", "causeway-recovery-")
	if err != nil {
		return nil, err
	}
	if *keepLogs {
		fmt.Println("temp dir (kept):", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	bin := *binPath
	if isFloor {
		bin = *floorBin
		if bin == "" {
			if bin, err = procs.GoBuild(dir, "floor", "./benchmarks/cmd/floor"); err != nil {
				return nil, err
			}
		}
	} else if bin == "" {
		if bin, err = buildBinary(dir); err != nil {
			return nil, err
		}
	}
	var sb [24]byte
	_, _ = rand.Read(sb[:])
	secret := hex.EncodeToString(sb[:])
	c := &cluster{bin: bin, dir: dir, env: []string{"CAUSEWAY_AUTH_SECRET=" + secret, "CAUSEWAY_LOG_LEVEL=info"}}
	var extra []string
	if *envFlag != "" {
		for _, kv := range strings.Split(*envFlag, ",") {
			extra = append(extra, strings.TrimSpace(kv))
		}
	}
	c.env = append(c.env, extra...)
	defer c.stop()

	groups := (*nClients + *groupSize - 1) / *groupSize
	cfg := &rep.Config
	cfg.Clients, cfg.GroupSize, cfg.Groups = *nClients, *groupSize, groups
	cfg.IntervalMs = float64(*interval) / 1e6
	cfg.WarmupSec, cfg.TimeoutSec = warmup.Seconds(), timeout.Seconds()
	cfg.MinBackoff, cfg.MaxBackoff = minBackoff.String(), maxBackoff.String()
	if *minBackoff == 0 {
		cfg.MinBackoff = "50ms (client default)"
	}
	if *maxBackoff == 0 {
		cfg.MaxBackoff = "5s (client default)"
	}
	cfg.Signal = "SIG" + *sigName
	cfg.EventBuffer, cfg.Edges, cfg.BrokerDisk, cfg.Env = *eventBuf, 3, *dataDir, extra

	t0 := time.Now()
	var fp *floorPair
	if isFloor {
		cfg.Edges, cfg.BrokerDisk, cfg.Env = 2, false, nil
		if fp, err = startFloorPair(ctx, bin, dir); err != nil {
			return nil, err
		}
		defer fp.stop()
		c.edges, c.edgeIDs = fp.addrs[:], fp.ids[:]
		fmt.Printf("floors up in %.1fs: %v\n", time.Since(t0).Seconds(), fp.addrs)
	} else {
		if err := c.up(3); err != nil {
			return nil, err
		}
		fmt.Printf("cluster up in %.1fs: broker %s, edges %v\n", time.Since(t0).Seconds(), c.baddr, c.edges)
	}

	prefix := hex.EncodeToString(sb[:3])
	token := func(user string) func(context.Context) (string, error) {
		return func(context.Context) (string, error) {
			return edge.Mint([]byte(secret), user, []string{"rec-*"}, 24*time.Hour, time.Now())
		}
	}
	sessCfg := func(user string, urls []string) client.SessionConfig {
		sc := client.SessionConfig{URLs: urls, Token: token(user), MinBackoff: *minBackoff, MaxBackoff: *maxBackoff, EventBuffer: *eventBuf}
		if isFloor {
			// A group's clients must all be on its floor.
			sc.Order = client.OrderListed
		}
		return sc
	}
	urlsFrom := func(home int) []string {
		u := []string{wsURL(c.edges[home])}
		for i := range c.edges {
			if i != home {
				u = append(u, wsURL(c.edges[i]))
			}
		}
		return u
	}

	var killNS atomic.Int64
	members := make([]*member, *nClients)
	var closeMu sync.Mutex
	var sessions []*client.Session
	defer func() {
		closeMu.Lock()
		defer closeMu.Unlock()
		var wg sync.WaitGroup
		for _, s := range sessions {
			wg.Add(1)
			go func() { defer wg.Done(); _ = s.Close() }()
		}
		wg.Wait()
	}()
	track := func(s *client.Session) {
		closeMu.Lock()
		sessions = append(sessions, s)
		closeMu.Unlock()
	}

	// Connect the members.
	sem := make(chan struct{}, *dialPar)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for i := range members {
		m := &member{user: fmt.Sprintf("rec-%s-u%d", prefix, i), group: fmt.Sprintf("rec-%s-g%d", prefix, i / *groupSize), home: i % len(c.edges), floor: isFloor}
		if isFloor {
			m.home = floorHome(i / *groupSize)
		}
		members[i] = m
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			s, err := client.Connect(cctx, sessCfg(m.user, urlsFrom(m.home)))
			if err != nil {
				firstErr.CompareAndSwap(nil, fmt.Errorf("%s connect: %w", m.user, err))
				return
			}
			track(s)
			m.s = s
			go m.receive(&killNS)
			if err := s.Join(cctx, m.group); err != nil {
				firstErr.CompareAndSwap(nil, fmt.Errorf("%s join: %w", m.user, err))
				return
			}
			if _, err := s.Subscribe(cctx, m.group); err != nil {
				firstErr.CompareAndSwap(nil, fmt.Errorf("%s subscribe: %w", m.user, err))
			}
		}()
	}
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		return nil, e.(error)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	// One publisher per group, on edges 2 and 3 only: the kill must not
	// stall the traffic we measure with. (A floor group's publisher is on
	// its floor: those of the killed one reconnect too.)
	type pubState struct {
		s       *client.Session
		maxSeq  atomic.Uint64
		lastSeq atomic.Uint64 // a moved floor group's seqs start again
		sent    atomic.Int64
		errs    atomic.Int64
		lastErr atomic.Value
	}
	pubs := make([]*pubState, groups)
	pubURLs := []string{wsURL(c.edges[1%len(c.edges)]), wsURL(c.edges[2%len(c.edges)])}
	for g := 0; g < groups; g++ {
		user := fmt.Sprintf("rec-%s-pub%d", prefix, g)
		group := fmt.Sprintf("rec-%s-g%d", prefix, g)
		urls := pubURLs
		if isFloor {
			urls = urlsFrom(floorHome(g))
		}
		s, err := client.Connect(ctx, sessCfg(user, urls))
		if err != nil {
			return nil, fmt.Errorf("publisher %d: %w", g, err)
		}
		track(s)
		go func() {
			for range s.Events() {
			}
		}()
		if err := s.Join(ctx, group); err != nil {
			return nil, fmt.Errorf("publisher %d join: %w", g, err)
		}
		pubs[g] = &pubState{s: s}
	}
	rep.SetupSec = time.Since(t0).Seconds()
	fmt.Printf("%d members in %d groups + %d publishers connected in %.1fs\n", len(members), groups, groups, rep.SetupSec)

	pctx, stopPub := context.WithCancel(ctx)
	var pwg sync.WaitGroup
	for g, p := range pubs {
		group := fmt.Sprintf("rec-%s-g%d", prefix, g)
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			// Spread the groups over the interval.
			if err := sleepCtx(pctx, time.Duration(g)*(*interval)/time.Duration(groups)); err != nil {
				return
			}
			tick := time.NewTicker(*interval)
			defer tick.Stop()
			for n := 0; ; n++ {
				id := fmt.Sprintf("p%d-%d", time.Now().UnixNano(), n)
				sctx, cancel := context.WithTimeout(pctx, 30*time.Second)
				seq, err := p.s.Send(sctx, group, id, map[string]int{"n": n})
				cancel()
				if err != nil {
					if pctx.Err() != nil {
						return
					}
					p.errs.Add(1)
					p.lastErr.Store(err.Error())
				} else {
					p.sent.Add(1)
					p.lastSeq.Store(seq)
					if seq > p.maxSeq.Load() {
						p.maxSeq.Store(seq)
					}
				}
				select {
				case <-tick.C:
				case <-pctx.Done():
					return
				}
			}
		}()
	}
	if err := sleepCtx(ctx, *warmup); err != nil {
		stopPub()
		return nil, err
	}

	// Who is on edge 1 now? (The Session shuffles its URLs, so this is
	// not necessarily the home edge.)
	rep.Placement = map[string]int{}
	var affected []*member
	baseRecon := make(map[*member]uint64)
	oldConn := make(map[*member]*client.Client)
	for _, m := range members {
		cur := m.s.Client()
		id := "(reconnecting)"
		if cur != nil {
			id = cur.Edge()
		}
		rep.Placement[id]++
		baseRecon[m] = m.s.Stats().Reconnects
		if id == c.edgeIDs[0] {
			affected = append(affected, m)
			oldConn[m] = cur
		}
	}
	// When each affected client's connection to edge 1 is seen closed.
	var detMu sync.Mutex
	detectD := make([]time.Duration, 0, len(affected))
	for _, cur := range oldConn {
		go func() {
			<-cur.Done()
			d := time.Since(time.Unix(0, killNS.Load()))
			detMu.Lock()
			detectD = append(detectD, d)
			detMu.Unlock()
		}()
	}
	pubBase := uint64(0)
	for _, p := range pubs {
		pubBase += p.s.Stats().Reconnects
	}

	// The kill.
	killT := time.Now()
	for _, m := range members {
		m.mu.Lock()
		m.killT, m.lastAtK = killT, m.last
		m.mu.Unlock()
	}
	killNS.Store(killT.UnixNano())
	if isFloor {
		fp.kill()
	} else {
		_ = syscall.Kill(-c.edgeProc[0].cmd.Process.Pid, sig)
	}
	fmt.Printf("SIG%s sent to %s (%d clients on it) at %s\n", *sigName, c.edgeIDs[0], len(affected), killT.Format("15:04:05.000"))

	// Poll for reconnects and liveness.
	reconAt := make(map[*member]time.Time)
	deadline := killT.Add(*timeout)
	nextProgress := killT.Add(time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		live := 0
		for _, m := range affected {
			if _, ok := reconAt[m]; !ok && m.s.Stats().Reconnects > baseRecon[m] {
				reconAt[m] = time.Now()
			}
			m.mu.Lock()
			if !m.liveAt.IsZero() {
				live++
			}
			m.mu.Unlock()
		}
		if now := time.Now(); now.After(nextProgress) {
			fmt.Printf("  +%4.1fs reconnected %d/%d, live %d/%d\n", now.Sub(killT).Seconds(), len(reconAt), len(affected), live, len(affected))
			nextProgress = nextProgress.Add(time.Second)
		}
		if live == len(affected) && len(reconAt) == len(affected) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}

	var recD, liveD []time.Duration
	var lastLive time.Time
	for _, m := range affected {
		if t, ok := reconAt[m]; ok {
			recD = append(recD, t.Sub(killT))
		}
		m.mu.Lock()
		live, gap := m.liveAt, m.gapAfterK
		m.mu.Unlock()
		_, rec := reconAt[m]
		switch {
		case !live.IsZero() && rec:
			d := live.Sub(killT)
			liveD = append(liveD, d)
			if live.After(lastLive) {
				lastLive = live
			}
		default:
			why := "no post-kill message"
			if gap {
				why = "gap after the kill"
			} else if !rec {
				why = "not reconnected"
			}
			rep.NotRecovered = append(rep.NotRecovered, m.user+": "+why)
		}
	}
	rep.Affected = len(affected)
	rep.Reconnected = len(recD)
	rep.Recovered = len(liveD)
	rep.ReconnectMs = quant(recD)
	detMu.Lock()
	rep.DetectMs = quant(slices.Clone(detectD))
	detMu.Unlock()
	rep.LiveMs = quant(liveD)
	if !lastLive.IsZero() && rep.Recovered == rep.Affected {
		rep.AllRecoveredSec = lastLive.Sub(killT).Seconds()
	}

	// Stop publishing; every member must catch up to its group's last
	// acked seq.
	stopPub()
	pwg.Wait()
	want := make(map[string]uint64)
	for g, p := range pubs {
		want[fmt.Sprintf("rec-%s-g%d", prefix, g)] = p.maxSeq.Load()
		if isFloor {
			want[fmt.Sprintf("rec-%s-g%d", prefix, g)] = p.lastSeq.Load()
		}
		rep.Sent += p.sent.Load()
		rep.SendErrors += p.errs.Load()
		if e, ok := p.lastErr.Load().(string); ok && rep.SendErrorSample == "" {
			rep.SendErrorSample = e
		}
		rep.PublisherRecon += int(p.s.Stats().Reconnects)
	}
	rep.PublisherRecon -= int(pubBase)
	sdl := time.Now().Add(*settle)
	for {
		behind := 0
		for _, m := range members {
			m.mu.Lock()
			if m.last < want[m.group] {
				behind++
			}
			m.mu.Unlock()
		}
		rep.Incomplete = behind
		if behind == 0 || time.Now().After(sdl) || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // late duplicates would show now

	isAffected := make(map[*member]bool, len(affected))
	for _, m := range affected {
		isAffected[m] = true
	}
	rep.SessionStats = map[string]int{}
	for _, m := range members {
		m.mu.Lock()
		rep.Gaps += m.gaps
		rep.Duplicates += m.dups
		rep.Unrecoverable += m.lost
		if m.gapAfterK {
			rep.GapClients++
		}
		m.mu.Unlock()
		st := m.s.Stats()
		if isAffected[m] {
			rep.SessionStats["reconnects"] += int(st.Reconnects - baseRecon[m])
			rep.SessionStats["resubscribes"] += int(st.Resubscribes)
			rep.SessionStats["gaps_detected"] += int(st.GapsDetected)
			rep.SessionStats["gaps_recovered"] += int(st.GapsRecovered)
			rep.SessionStats["gaps_unrecoverable"] += int(st.GapsUnrecoverable)
			rep.SessionStats["duplicates_dropped"] += int(st.DuplicatesDropped)
			rep.SessionStats["send_retries"] += int(st.SendRetries)
		} else if st.Reconnects > baseRecon[m] {
			rep.UnaffectedRecon++
		}
	}

	fail := func(f string, a ...any) { rep.Failures = append(rep.Failures, fmt.Sprintf(f, a...)) }
	if rep.Affected == 0 {
		fail("no client was on %s", c.edgeIDs[0])
	}
	if rep.Recovered < rep.Affected {
		fail("%d of %d affected clients not live again within %v", rep.Affected-rep.Recovered, rep.Affected, *timeout)
	}
	switch {
	case isFloor && rep.Gaps > 0:
		fail("%d gaps seen by the application (a moved group's seqs start again on the other floor, but must be dense after)", rep.Gaps)
	case !isFloor && (rep.Gaps > 0 || rep.Unrecoverable > 0):
		fail("%d gaps, %d unrecoverable subscribes seen by the application", rep.Gaps, rep.Unrecoverable)
	}
	if rep.Duplicates > 0 {
		fail("%d duplicates seen by the application", rep.Duplicates)
	}
	if rep.Incomplete > 0 {
		fail("%d clients behind their group's last acked seq %v after publishing stopped", rep.Incomplete, *settle)
	}
	if rep.SendErrors > 0 {
		fail("%d send errors (%s)", rep.SendErrors, rep.SendErrorSample)
	}
	rep.Pass = len(rep.Failures) == 0
	if len(rep.NotRecovered) > 20 {
		rep.NotRecovered = append(rep.NotRecovered[:20], fmt.Sprintf("... and %d more", len(rep.NotRecovered)-20))
	}
	return rep, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func fillMachine(rep *Report) {
	rep.Machine.CPUs = runtime.NumCPU()
	rep.Machine.GoVersion = runtime.Version()
	rep.Machine.CPUModel = machine.CPUModel()
	rep.Machine.MemTotal = machine.MemTotal()
}

func printSummary(rep *Report) {
	r, l := rep.ReconnectMs, rep.LiveMs
	killed, liveText := "edge-1", "live, no gap        "
	if rep.Target == "floor" {
		killed, liveText = "floor-a", "live (floor: no gap check across the move)"
	}
	fmt.Printf(`
== recovery summary (%d CPUs, %s, %s got %s)
clients              %d in %d groups of %d, 1 publisher/group every %.0f ms, %d server process(es)
placement at kill    %v
affected             %d
connection seen lost %d: p50 %.0f  p90 %.0f  p99 %.0f  max %.0f ms
reconnected          %d within %.0fs: p50 %.0f  p90 %.0f  p99 %.0f  max %.0f ms
%s %d within %.0fs: p50 %.0f  p90 %.0f  p99 %.0f  max %.0f ms (min %.0f)
all recovered after  %.2fs
application saw      %d gaps, %d duplicates, %d unrecoverable subscribes (%d clients with a gap after the kill)
unaffected clients   %d reconnected; publishers reconnected %d
sends                %d acked, %d errors
after settle         %d clients behind their group's last acked seq
affected sessions    %v
result               %s
`,
		rep.Machine.CPUs, rep.Machine.GoVersion, killed, rep.Config.Signal,
		rep.Config.Clients, rep.Config.Groups, rep.Config.GroupSize, rep.Config.IntervalMs, rep.Config.Edges,
		rep.Placement, rep.Affected,
		rep.DetectMs.Count, rep.DetectMs.P50, rep.DetectMs.P90, rep.DetectMs.P99, rep.DetectMs.Max,
		rep.Reconnected, rep.Config.TimeoutSec, r.P50, r.P90, r.P99, r.Max,
		liveText, rep.Recovered, rep.Config.TimeoutSec, l.P50, l.P90, l.P99, l.Max, l.Min,
		rep.AllRecoveredSec,
		rep.Gaps, rep.Duplicates, rep.Unrecoverable, rep.GapClients,
		rep.UnaffectedRecon, rep.PublisherRecon,
		rep.Sent, rep.SendErrors,
		rep.Incomplete, rep.SessionStats, passText(rep))
	for _, s := range rep.NotRecovered {
		fmt.Println("  not recovered:", s)
	}
}

func passText(rep *Report) string {
	if rep.Pass && rep.Target == "floor" {
		return "PASS (every affected client live again on the other floor; no duplicates; every client caught up)"
	}
	if rep.Pass {
		return "PASS (every affected client live again with no gap; no duplicates; every client caught up)"
	}
	return "FAIL: " + strings.Join(rep.Failures, "; ")
}

func writeJSON(path string, rep *Report) error { return machine.WriteJSON(path, rep) }
