// Command callsetup measures Causeway's signaling (issue 4): how long a
// 1:1 call takes to set up across edges, and what presence fan-out costs.
//
// It starts `causeway dev --edges 3` from a built binary in its own process
// (as benchmarks/run.sh does; or drives an existing cluster with -url and
// -secret), or with -target floor the floor server (benchmarks/cmd/floor,
// one process: there is no second server to put the callee on, so caller
// and callee share it and the floor's figure is the relay alone), and runs
// one of two scenarios:
//
//   - call (default): -pairs caller/callee pairs, caller and callee always
//     on different edges. Each caller sends `offer` to its callee on a
//     fixed schedule (-calls-per-sec per pair); the callee answers each
//     offer, as soon as it receives it, with `answer` to the caller's
//     session (to_session). Measured per call, from the offer's intended
//     send time: offer received by the callee, answer received by the
//     caller (the call-setup latency). With -load, benchmarks/cmd/loadgen
//     runs as a separate process against the same edges during the
//     measurement (group fan-out as background load). The floor runs
//     this scenario unchanged (it relays signal frames).
//   - presence: for each -watchers level W, W sessions (spread over the
//     edges) watch one user X. X connects and disconnects -spaced times,
//     -spacing apart (every change is pushed: frames per watcher and
//     change -> update latency), then -flaps times and connects once more,
//     -flap-interval between changes (coalescing: at most one push per
//     sequencer.presence_window per watcher, ending in the true state).
//     Causeway only: the floor has no presence.
//
// It prints a summary, writes JSON to -out and stops every process it
// started. See benchmarks/RESULTS.md.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/causeway/causeway/benchmarks/internal/machine"
	"github.com/causeway/causeway/benchmarks/internal/procs"
	"github.com/causeway/causeway/edge"
	"github.com/causeway/causeway/edge/client"
)

var (
	scenario = flag.String("scenario", "call", "call (call-setup latency) or presence (presence fan-out)")
	target   = flag.String("target", "causeway", "server to measure: causeway (causeway dev, or -url) or floor (benchmarks/cmd/floor, one process started here; call scenario only)")
	binPath  = flag.String("causeway", "", "path to a built causeway binary (empty: go build ./cmd/causeway into a temp dir)")
	floorBin = flag.String("floor", "", "with -target floor: path to a built floor server (empty: go build ./benchmarks/cmd/floor)")
	nEdges   = flag.Int("edges", 3, "edges of the `causeway dev` cluster started here")
	urls     = flag.String("url", "", "comma-separated edge WebSocket URLs of an existing cluster (empty: start `causeway dev`)")
	secret   = flag.String("secret", "", "token secret of the -url cluster")
	out      = flag.String("out", "", "JSON report (default benchmarks/results/<scenario>-latest.json; \"-\": none)")
	keep     = flag.Bool("keep", false, "keep the temp dir (cluster and loadgen logs)")
	quick    = flag.Bool("quick", false, "smoke test (CI): call scenario, 6 pairs, 1s warmup, 3s, -out test-output/callsetup-quick.json; explicit flags win")
	check    = flag.Bool("check", true, "exit 1 if a call was not set up, a signal failed or a presence update went missing")
	dialPar  = flag.Int("dial-concurrency", 64, "connections dialled at once during setup")

	// call
	pairs        = flag.Int("pairs", 50, "call scenario: caller/callee pairs (100 connections for 50)")
	callRate     = flag.Float64("calls-per-sec", 2, "call scenario: calls per second per pair")
	payloadBytes = flag.Int("payload-bytes", 1024, "call scenario: size of each offer/answer payload (a JSON object holding a string)")
	warmup       = flag.Duration("warmup", 2*time.Second, "call scenario: calls before the measurement (not counted)")
	duration     = flag.Duration("duration", 20*time.Second, "call scenario: measured time")
	drain        = flag.Duration("drain", 10*time.Second, "call scenario: longest wait for outstanding answers after the last call")
	sigTimeout   = flag.Duration("signal-timeout", 10*time.Second, "call scenario: one signal, until its ack")
	load         = flag.Bool("load", false, "call scenario: run benchmarks/cmd/loadgen against the same edges, in its own process, during the measurement")
	loadgenBin   = flag.String("loadgen", "", "with -load: path to a built loadgen (empty: go build ./benchmarks/cmd/loadgen)")
	loadArgs     = flag.String("load-args", "-groups 10 -members 100 -rate 50", "with -load: loadgen flags (-url, -secret, -warmup, -duration, -progress and -out are set here)")
	loadOut      = flag.String("load-out", "", "with -load: loadgen's JSON report (default: -out with -loadgen before .json)")

	// presence
	watcherLevels = flag.String("watchers", "10,100,1000", "presence scenario: comma-separated numbers of watchers W, one run each")
	spaced        = flag.Int("spaced", 5, "presence scenario: connect/disconnect cycles of X with changes -spacing apart")
	spacing       = flag.Duration("spacing", 1500*time.Millisecond, "presence scenario: time between X's spaced changes (more than sequencer.presence_window)")
	flaps         = flag.Int("flaps", 20, "presence scenario: fast connect/disconnect cycles of X (then one more connect: 2*flaps+1 changes)")
	flapInterval  = flag.Duration("flap-interval", 100*time.Millisecond, "presence scenario: time between X's fast changes")
	settle        = flag.Duration("settle", 6*time.Second, "presence scenario: wait after the last fast change for the coalesced final state")
	window        = flag.Duration("presence-window", time.Second, "presence scenario: the cluster's sequencer.presence_window (for the bound check)")
)

func main() {
	flag.Parse()
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	def := func(name, v string) {
		if !set[name] {
			_ = flag.Set(name, v)
		}
	}
	suffix := ""
	if *target == "floor" {
		suffix = "-floor"
	}
	if *quick {
		def("scenario", "call")
		def("pairs", "6")
		def("calls-per-sec", "2")
		def("warmup", "1s")
		def("duration", "3s")
		def("drain", "5s")
		def("out", "test-output/callsetup"+suffix+"-quick.json")
	}
	def("out", "benchmarks/results/"+*scenario+suffix+"-latest.json")
	if err := validate(); err != nil {
		fmt.Fprintln(os.Stderr, "callsetup:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	rep, err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "callsetup:", err)
		os.Exit(1)
	}
	if *out != "-" {
		if err := machine.WriteJSON(*out, rep); err != nil {
			fmt.Fprintln(os.Stderr, "callsetup: write report:", err)
			os.Exit(1)
		}
		fmt.Println("report written to", *out)
	}
	if *check && !rep.Pass {
		fmt.Println("FAIL:", strings.Join(rep.Failures, "; "))
		os.Exit(1)
	}
}

func validate() error {
	switch {
	case *scenario != "call" && *scenario != "presence":
		return errors.New("-scenario must be call or presence")
	case *target != "causeway" && *target != "floor":
		return errors.New("-target must be causeway or floor")
	case *target == "floor" && (*scenario != "call" || *urls != ""):
		return errors.New("-target floor runs the call scenario against a floor started here (no presence, no -url)")
	case *urls == "" && *nEdges < 2:
		return errors.New("-edges must be at least 2 (caller and callee on different edges)")
	case *urls != "" && *secret == "":
		return errors.New("-url needs -secret")
	case *pairs < 1 || *callRate <= 0 || *duration <= 0 || *warmup < 0 || *drain < 0:
		return errors.New("-pairs, -calls-per-sec and -duration must be positive, -warmup and -drain not negative")
	case *payloadBytes < 16:
		return errors.New("-payload-bytes must be at least 16")
	case *spaced < 0 || *flaps < 0 || *spacing <= 0 || *flapInterval <= 0:
		return errors.New("-spaced and -flaps must not be negative, -spacing and -flap-interval positive")
	case *dialPar < 1:
		return errors.New("-dial-concurrency must be at least 1")
	case *load && *urls != "":
		return errors.New("-load starts loadgen against the cluster started here; run loadgen yourself with -url")
	}
	_, err := parseLevels(*watcherLevels)
	return err
}

func parseLevels(s string) ([]int, error) {
	var ws []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-watchers: %q is not a positive number", f)
		}
		ws = append(ws, n)
	}
	return ws, nil
}

// Report is the JSON written to -out; Call or Presence is set.
type Report struct {
	Time     time.Time `json:"time"`
	Scenario string    `json:"scenario"`
	Command  string    `json:"command"`
	Machine  struct {
		CPUs       int    `json:"cpus"`
		GOMAXPROCS int    `json:"gomaxprocs"`
		CPUModel   string `json:"cpu_model"`
		GoVersion  string `json:"go_version"`
		MemTotal   string `json:"mem_total"`
		NoFile     uint64 `json:"rlimit_nofile"`
	} `json:"machine"`
	Target   string          `json:"target"`
	Cluster  string          `json:"cluster"`
	Edges    []string        `json:"edges"`
	Call     *CallReport     `json:"call,omitempty"`
	Presence []PresenceLevel `json:"presence,omitempty"`
	LoadAvg  string          `json:"loadavg_at_end"`
	Pass     bool            `json:"pass"`
	Failures []string        `json:"failures,omitempty"`
}

func run(ctx context.Context) (*Report, error) {
	rep := &Report{Time: time.Now().UTC(), Scenario: *scenario, Target: *target, Command: strings.Join(os.Args, " ")}
	rep.Machine.CPUs = runtime.NumCPU()
	rep.Machine.GOMAXPROCS = runtime.GOMAXPROCS(0)
	rep.Machine.GoVersion = runtime.Version()
	rep.Machine.CPUModel = machine.CPUModel()
	rep.Machine.MemTotal = machine.MemTotal()
	nf, err := machine.RaiseNoFile() // before starting the cluster: it inherits the limit
	if err != nil {
		fmt.Fprintln(os.Stderr, "callsetup: raising RLIMIT_NOFILE:", err)
	}
	rep.Machine.NoFile = nf

	dir, err := os.MkdirTemp("", "causeway-callsetup-")
	if err != nil {
		return nil, err
	}
	if *keep {
		fmt.Println("temp dir (kept):", dir)
	} else {
		defer os.RemoveAll(dir)
	}

	var cl *devProc
	var fl *procs.Server
	sec := []byte(*secret)
	switch {
	case *target == "floor":
		bin := *floorBin
		if bin == "" {
			if bin, err = goBuild(dir, "floor", "./benchmarks/cmd/floor"); err != nil {
				return nil, err
			}
		}
		t0 := time.Now()
		if fl, err = procs.StartFloor(ctx, bin, dir, nil); err != nil {
			return nil, fmt.Errorf("start the floor: %w", err)
		}
		defer fl.Stop(5 * time.Second)
		sec = []byte(fl.Secret)
		rep.Cluster = "floor (benchmarks/cmd/floor, one process: caller and callee on the same server)"
		rep.Edges = fl.URLs
		fmt.Printf("floor up in %.2fs: %s\n", time.Since(t0).Seconds(), fl.URLs[0])
	case *urls != "":
		rep.Cluster = "external (-url)"
		for _, u := range strings.Split(*urls, ",") {
			if u = strings.TrimSpace(u); u != "" {
				rep.Edges = append(rep.Edges, u)
			}
		}
		if len(rep.Edges) < 2 {
			return nil, errors.New("-url needs at least 2 edges")
		}
	default:
		bin := *binPath
		if bin == "" {
			if bin, err = goBuild(dir, "causeway", "./cmd/causeway"); err != nil {
				return nil, err
			}
		}
		var sb [16]byte
		_, _ = rand.Read(sb[:])
		sec = []byte("bench-" + hex.EncodeToString(sb[:]))
		t0 := time.Now()
		cl, err = startDev(ctx, bin, dir, *nEdges, string(sec))
		if err != nil {
			return nil, err
		}
		defer cl.stop()
		rep.Cluster = fmt.Sprintf("causeway dev --edges %d (own process, broker data dir on disk), every setting at its default", *nEdges)
		rep.Edges = cl.urls
		fmt.Printf("causeway dev up in %.2fs: %s\n", time.Since(t0).Seconds(), strings.Join(cl.urls, " "))
	}

	env := &env{dir: dir, urls: rep.Edges, secret: sec, dev: cl, floor: fl}
	switch *scenario {
	case "call":
		rep.Call, err = runCalls(ctx, env)
		if err != nil {
			return nil, err
		}
		rep.Failures = append(rep.Failures, rep.Call.Failures...)
		printCall(rep)
	case "presence":
		levels, _ := parseLevels(*watcherLevels)
		for _, w := range levels {
			lv, err := runPresence(ctx, env, w)
			if err != nil {
				return nil, err
			}
			rep.Presence = append(rep.Presence, *lv)
			rep.Failures = append(rep.Failures, lv.Failures...)
			printPresence(lv)
		}
	}
	rep.LoadAvg = loadAvg()
	rep.Pass = len(rep.Failures) == 0
	return rep, nil
}

// env is what a scenario needs from the cluster.
type env struct {
	dir    string
	urls   []string
	secret []byte
	dev    *devProc      // nil with -url and -target floor
	floor  *procs.Server // with -target floor
}

// local reports whether the server runs on this machine, started here,
// so its CPU can be read.
func (e *env) local() bool { return e.dev != nil || e.floor != nil }

// serverCPU is the CPU time the server process has used so far.
func (e *env) serverCPU() time.Duration {
	if e.floor != nil {
		return procCPU(e.floor.PID())
	}
	return e.dev.cpu()
}

// counters are the server's /metrics counters the call scenario reads
// per second of its window (frames written, and delivery records or
// relayed signals) and at its end (slow consumers, expired signals:
// either fails the run).
func (e *env) counters() (window, end []string) {
	if e.floor != nil {
		return []string{mFloorFrames, mFloorSignals}, []string{mFloorSlow}
	}
	return []string{mFramesOut, mDeliveries}, []string{mSlow, mExpired}
}

func (e *env) dial(ctx context.Context, user string, edgeIdx int, opts *client.Options) (*client.Client, error) {
	tok, err := edge.Mint(e.secret, user, []string{"bench-*"}, 24*time.Hour, time.Now())
	if err != nil {
		return nil, err
	}
	return client.Dial(ctx, e.urls[edgeIdx%len(e.urls)], tok, opts)
}

// goBuild builds pkg of this module into dir/name.
func goBuild(dir, name, pkg string) (string, error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return bin, nil
}

// devProc is `causeway dev` running in its own process group.
type devProc struct {
	cmd    *exec.Cmd
	errLog string
	urls   []string
	done   chan struct{}
}

func startDev(ctx context.Context, bin, dir string, edges int, secret string) (*devProc, error) {
	errLog := filepath.Join(dir, "dev.err")
	ef, err := os.Create(errLog)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "dev", "--edges", strconv.Itoa(edges), "--http-addr", "127.0.0.1:0",
		"--broker-listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "dev"))
	cmd.Env = append(os.Environ(), "CAUSEWAY_AUTH_SECRET="+secret, "CAUSEWAY_LOG_LEVEL=warn")
	cmd.Stderr = ef
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		ef.Close()
		return nil, err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		ef.Close()
		return nil, fmt.Errorf("start causeway dev: %w", err)
	}
	d := &devProc{cmd: cmd, errLog: errLog, done: make(chan struct{})}
	found := make(chan string, edges)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			// "edge edge-1: ws://127.0.0.1:PORT/v1/ws (health: ...)"
			if l := sc.Text(); strings.HasPrefix(l, "edge edge-") {
				if i := strings.Index(l, "ws://"); i >= 0 {
					u, _, _ := strings.Cut(l[i:], " ")
					found <- u
				}
			}
		}
	}()
	go func() { _ = cmd.Wait(); ef.Close(); close(d.done) }()
	deadline := time.After(60 * time.Second)
	for len(d.urls) < edges {
		select {
		case u := <-found:
			d.urls = append(d.urls, u)
		case <-d.done:
			return nil, fmt.Errorf("causeway dev exited: %s", tail(errLog))
		case <-deadline:
			d.stop()
			return nil, errors.New("causeway dev did not print its edges within 60s")
		case <-ctx.Done():
			d.stop()
			return nil, ctx.Err()
		}
	}
	for _, u := range d.urls {
		if err := waitReady(ctx, u); err != nil {
			d.stop()
			return nil, err
		}
	}
	return d, nil
}

// stop sends SIGINT (edges flush, the sequencer ends its transaction) and
// SIGKILLs the process group if it is not gone within 20 s.
func (d *devProc) stop() {
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Signal(os.Interrupt)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		fmt.Fprintln(os.Stderr, "callsetup: causeway dev did not stop within 20s; killing it")
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
	}
}

// cpu is the CPU time the cluster process has used so far.
func (d *devProc) cpu() time.Duration {
	if d == nil {
		return 0
	}
	return procCPU(d.cmd.Process.Pid)
}

// procCPU reads utime+stime of pid from /proc (0 if unknown).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineBusy is the non-idle CPU time of the whole machine, and the part
// of it spent in interrupts and softirqs (loopback networking is mostly
// there when it is not charged to a process), from /proc/stat.
func machineBusy() (busy, irq time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, 0
	}
	var all, ir int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest is in user
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, 0
		}
		all += n
		if i == 5 || i == 6 {
			ir += n
		}
	}
	return time.Duration(all) * time.Second / 100, time.Duration(ir) * time.Second / 100
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

func httpBase(wsURL string) string {
	u := strings.Replace(strings.Replace(wsURL, "wss://", "https://", 1), "ws://", "http://", 1)
	scheme, rest, _ := strings.Cut(u, "://")
	host, _, _ := strings.Cut(rest, "/")
	return scheme + "://" + host
}

func waitReady(ctx context.Context, wsURL string) error {
	deadline := time.Now().Add(60 * time.Second)
	hc := &http.Client{Timeout: 2 * time.Second}
	for time.Now().Before(deadline) && ctx.Err() == nil {
		resp, err := hc.Get(httpBase(wsURL) + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("edge %s never became ready", wsURL)
}

// edgeCounters sums the named counters over every edge's /metrics.
func edgeCounters(urls []string, names ...string) map[string]float64 {
	sum := map[string]float64{}
	hc := &http.Client{Timeout: 2 * time.Second}
	for _, u := range urls {
		resp, err := hc.Get(httpBase(u) + "/metrics")
		if err != nil {
			continue
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if l == "" || l[0] == '#' {
				continue
			}
			i := strings.LastIndexByte(l, ' ')
			if i <= 0 || !slices.Contains(names, l[:i]) {
				continue
			}
			if v, err := strconv.ParseFloat(l[i+1:], 64); err == nil {
				sum[l[:i]] += v
			}
		}
	}
	return sum
}

const (
	mFramesOut  = "causeway_edge_frames_out_total"
	mDeliveries = "causeway_edge_deliveries_total"
	mSlow       = "causeway_edge_slow_consumer_disconnects_total"
	mExpired    = "causeway_edge_signals_expired_total"

	mFloorFrames  = "floor_frames_out_total"
	mFloorSignals = "floor_signals_total"
	mFloorSlow    = "floor_slow_consumer_disconnects_total"
)

// Latencies are recorded in microseconds, 1 us .. 10 min, 3 significant
// digits, as loadgen does.
func newHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(10*time.Minute/time.Microsecond), 3)
}

func quantiles(h *hdrhistogram.Histogram) map[string]float64 {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	if h.TotalCount() == 0 {
		return map[string]float64{"count": 0}
	}
	return map[string]float64{
		"count": float64(h.TotalCount()),
		"min":   ms(h.Min()),
		"mean":  h.Mean() / 1000,
		"p50":   ms(h.ValueAtQuantile(50)),
		"p90":   ms(h.ValueAtQuantile(90)),
		"p99":   ms(h.ValueAtQuantile(99)),
		"p999":  ms(h.ValueAtQuantile(99.9)),
		"max":   ms(h.Max()),
	}
}

func sleepUntil(ctx context.Context, t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
	case <-tm.C:
	}
}

func errKind(err error) string {
	var ce *client.Error
	switch {
	case errors.As(err, &ce):
		if ce.Reason != "" {
			return ce.Code + "/" + ce.Reason
		}
		return ce.Code
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	default:
		s := err.Error()
		if len(s) > 60 {
			s = s[:60]
		}
		return s
	}
}
