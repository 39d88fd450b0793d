// Command idle measures what an idle subscribed connection costs a server
// (issue 8, "idle"): N connections that said hello, joined a group and
// subscribed, then stay silent. For each server it reads, before any
// connection and at every level of -levels (cumulative: 5,000, then 5,000
// more, ...):
//
//   - VmRSS of the server process as it runs, then after a forced GC that
//     also returned free memory to the OS (GET /debug/gc), and the Go
//     heap and stacks in use;
//   - goroutines (from the same endpoint).
//
// Per connection = (level - baseline) / connections.
//
// Servers, each in its own process(es), started here:
//
//   - causeway: `causeway broker` and `causeway sequencer` from -causeway,
//     and the edge as benchmarks/cmd/edgehost (package edge with its
//     default configuration plus /debug/gc; abuse limits off), so the
//     edge's process holds nothing but the edge;
//   - floor: benchmarks/cmd/floor.
//
// The connections are held by -procs client processes per level step (this
// program re-executed with -worker), spread over -sources loopback source
// addresses (127.0.0.2 ...), since one process may hold at most 20,000
// open files here. Each worker uses coder/websocket directly, one reader
// goroutine per connection.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
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
	"github.com/coder/websocket"
)

var (
	cwBin    = flag.String("causeway", "", "built causeway binary (broker, sequencer); empty: go build")
	hostBin  = flag.String("edgehost", "", "built benchmarks/cmd/edgehost; empty: go build")
	floorBin = flag.String("floor", "", "built benchmarks/cmd/floor; empty: go build")
	targets  = flag.String("targets", "causeway,floor", "servers to measure, in order")
	levels   = flag.String("levels", "5000,10000,18000", "connection counts, ascending; each level adds connections to the previous")
	nProcs   = flag.Int("procs", 2, "client processes per level step")
	sources  = flag.Int("sources", 8, "loopback source addresses to spread the connections over (127.0.0.2 ...)")
	settle   = flag.Duration("settle", 5*time.Second, "wait after a level is reached before measuring")
	gsize    = flag.Int("group-size", 100, "members per group")
	dialPar  = flag.Int("dial-concurrency", 64, "per client process: connections being set up at once")
	out      = flag.String("out", "benchmarks/results/idle-latest.json", "JSON report (empty: none)")
	keep     = flag.Bool("keep", false, "keep the temp dir (logs)")

	// worker mode
	worker = flag.Bool("worker", false, "internal: hold connections (started by this program)")
	wURL   = flag.String("w-url", "", "internal")
	wSec   = flag.String("w-secret", "", "internal")
	wPfx   = flag.String("w-prefix", "", "internal")
	wFirst = flag.Int("w-first", 0, "internal")
	wCount = flag.Int("w-count", 0, "internal")
	wSrc   = flag.Int("w-src", 2, "internal: first source address 127.0.0.N")
)

func main() {
	flag.Parse()
	if *worker {
		if err := runWorker(); err != nil {
			fmt.Println("error", err)
			fmt.Fprintln(os.Stderr, "idle worker:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	rep, err := run(ctx)
	stop()
	if rep != nil && *out != "" {
		if werr := machine.WriteJSON(*out, rep); werr != nil {
			fmt.Fprintln(os.Stderr, "idle:", werr)
		} else {
			fmt.Println("report written to", *out)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "idle:", err)
		os.Exit(1)
	}
	if !rep.Pass {
		fmt.Println("FAIL:", strings.Join(rep.Failures, "; "))
		os.Exit(1)
	}
}

func parseLevels() ([]int, error) {
	var ls []int
	prev := 0
	for _, f := range strings.Split(*levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= prev {
			return nil, fmt.Errorf("-levels: %q is not a number above the previous level", f)
		}
		ls, prev = append(ls, n), n
	}
	return ls, nil
}

func run(ctx context.Context) (*report.Idle, error) {
	ls, err := parseLevels()
	if err != nil {
		return nil, err
	}
	rep := &report.Idle{Time: time.Now().UTC(), Command: strings.Join(os.Args, " ")}
	rep.Machine = report.Machine{CPUs: runtime.NumCPU(), CPUModel: machine.CPUModel(), GoVersion: runtime.Version(), MemTotal: machine.MemTotal()}
	rep.Machine.NoFile, _ = machine.RaiseNoFile()
	rep.Config.Levels, rep.Config.Procs, rep.Config.SettleSec, rep.Config.GroupSize, rep.Config.Sources = ls, *nProcs, settle.Seconds(), *gsize, *sources
	if per := (ls[len(ls)-1] + *nProcs - 1) / *nProcs; uint64(per+256) > rep.Machine.NoFile && rep.Machine.NoFile > 0 {
		return nil, fmt.Errorf("a client process would hold %d connections; the open-files limit is %d: raise -procs", per, rep.Machine.NoFile)
	}
	dir, err := os.MkdirTemp("", "causeway-idle-")
	if err != nil {
		return nil, err
	}
	if *keep {
		fmt.Println("temp dir (kept):", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	need := func(p *string, name, pkg string) error {
		if *p != "" {
			return nil
		}
		b, err := procs.GoBuild(dir, name, pkg)
		*p = b
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	for _, t := range strings.Split(*targets, ",") {
		t = strings.TrimSpace(t)
		var tr *report.IdleTarget
		switch t {
		case "causeway":
			if err := need(cwBin, "causeway", "./cmd/causeway"); err != nil {
				return rep, err
			}
			if err := need(hostBin, "edgehost", "./benchmarks/cmd/edgehost"); err != nil {
				return rep, err
			}
		case "floor":
			if err := need(floorBin, "floor", "./benchmarks/cmd/floor"); err != nil {
				return rep, err
			}
		default:
			return rep, fmt.Errorf("-targets: unknown %q", t)
		}
		tdir := filepath.Join(dir, t)
		if err := os.MkdirAll(tdir, 0o755); err != nil {
			return rep, err
		}
		tr, err = measure(ctx, t, tdir, self, ls)
		if tr != nil {
			rep.Targets = append(rep.Targets, *tr)
			for _, l := range tr.Levels {
				line := fmt.Sprintf("%s, %d connections: RSS after GC %.1f KB per connection (as running %.1f KB), heap %.1f KB + stacks %.1f KB, %.2f goroutines per connection",
					t, l.Conns, l.RSSAfterGCPerConnKB, l.RSSPerConnKB, l.HeapPerConnKB, l.StackPerConnKB, l.GoroutinesPerConn)
				rep.Summary = append(rep.Summary, line)
			}
		}
		if err != nil {
			rep.Failures = append(rep.Failures, fmt.Sprintf("%s: %v", t, err))
			fmt.Fprintf(os.Stderr, "idle: %s: %v\n", t, err)
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
		}
	}
	rep.Pass = len(rep.Failures) == 0
	return rep, nil
}

// server is what measure needs of a started target.
type server struct {
	url     string
	secret  string
	pid     int
	gcURL   string
	others  map[string]int // name -> pid
	stopAll func()
}

func startCauseway(ctx context.Context, dir string) (*server, error) {
	var ps []*procs.Proc
	stop := func() {
		for i := len(ps) - 1; i >= 0; i-- {
			ps[i].Stop(15 * time.Second)
		}
	}
	baddr, err := procs.FreeAddr()
	if err != nil {
		return nil, err
	}
	env := []string{"CAUSEWAY_LOG_LEVEL=warn", "CAUSEWAY_AUTH_SECRET=" + procs.DevSecret}
	b, err := procs.Start("broker", dir, *cwBin, env, "broker", "--listen", baddr, "--data-dir", filepath.Join(dir, "broker"))
	if err != nil {
		return nil, err
	}
	ps = append(ps, b)
	if _, err := b.WaitLine(ctx, "listening on", 30*time.Second); err != nil {
		stop()
		return nil, err
	}
	sq, err := procs.Start("sequencer", dir, *cwBin, env, "sequencer", "--brokers", baddr, "--id", "seq-1")
	if err != nil {
		stop()
		return nil, err
	}
	ps = append(ps, sq)
	e, err := procs.Start("edge", dir, *hostBin, nil, "-brokers", baddr, "-secret", procs.DevSecret, "-id", "edge-1")
	if err != nil {
		stop()
		return nil, err
	}
	ps = append(ps, e)
	l1, err := e.WaitLine(ctx, "listening on ws://", 30*time.Second)
	if err != nil {
		stop()
		return nil, err
	}
	l2, err := e.WaitLine(ctx, "admin on http://", 10*time.Second)
	if err != nil {
		stop()
		return nil, err
	}
	s := &server{url: l1[strings.Index(l1, "ws://"):], secret: procs.DevSecret, pid: e.PID(),
		gcURL: strings.TrimPrefix(l2, "admin on ") + "/debug/gc", stopAll: stop,
		others: map[string]int{"broker": b.PID(), "sequencer": sq.PID()}}
	if err := procs.WaitReady(ctx, s.url, 60*time.Second); err != nil {
		stop()
		return nil, err
	}
	return s, nil
}

func startFloor(ctx context.Context, dir string) (*server, error) {
	f, err := procs.StartFloor(ctx, *floorBin, dir, nil)
	if err != nil {
		return nil, err
	}
	return &server{url: f.URLs[0], secret: f.Secret, pid: f.PID(), gcURL: procs.HTTPBase(f.URLs[0]) + "/debug/gc",
		stopAll: func() { f.Stop(15 * time.Second) }}, nil
}

// sample reads the server's RSS as it is, forces a GC, and reads it again.
func sample(s *server, conns int) (report.IdleSample, error) {
	st := machine.ProcStatus(s.pid)
	smp := report.IdleSample{Conns: conns, RSSKiB: st.RSSKiB}
	hc := &http.Client{Timeout: 60 * time.Second}
	resp, err := hc.Get(s.gcURL)
	if err != nil {
		return smp, fmt.Errorf("GET %s: %w", s.gcURL, err)
	}
	defer resp.Body.Close()
	var g struct {
		Goroutines int    `json:"goroutines"`
		HeapInuse  uint64 `json:"heap_inuse"`
		StackInuse uint64 `json:"stack_inuse"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&g); err != nil {
		return smp, fmt.Errorf("GET %s: %w", s.gcURL, err)
	}
	// Give the kernel a moment to account the released pages.
	time.Sleep(200 * time.Millisecond)
	st = machine.ProcStatus(s.pid)
	smp.RSSAfterGCKiB, smp.Threads = st.RSSKiB, st.Threads
	smp.Goroutines, smp.HeapInuse, smp.StackInuse = g.Goroutines, g.HeapInuse, g.StackInuse
	return smp, nil
}

// clientProc is one worker process holding connections.
type clientProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	done  chan struct{}
}

func measure(ctx context.Context, target, dir, self string, ls []int) (*report.IdleTarget, error) {
	var s *server
	var err error
	tr := &report.IdleTarget{Name: target}
	switch target {
	case "causeway":
		tr.Description = "the edge in its own process (benchmarks/cmd/edgehost: package edge, default configuration, abuse limits off); broker and sequencer in theirs"
		s, err = startCauseway(ctx, dir)
	default:
		tr.Description = "benchmarks/cmd/floor"
		s, err = startFloor(ctx, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	defer s.stopAll()
	var workers []*clientProc
	defer func() {
		for _, w := range workers {
			_ = w.stdin.Close()
		}
		for _, w := range workers {
			select {
			case <-w.done:
			case <-time.After(20 * time.Second):
				_ = w.cmd.Process.Kill()
				<-w.done
			}
		}
	}()
	time.Sleep(2 * time.Second)
	if tr.Baseline, err = sample(s, 0); err != nil {
		return tr, err
	}
	fmt.Printf("%s baseline: RSS %.1f MiB, after GC %.1f MiB, %d goroutines\n", target, float64(tr.Baseline.RSSKiB)/1024, float64(tr.Baseline.RSSAfterGCKiB)/1024, tr.Baseline.Goroutines)
	pfx := fmt.Sprintf("%06x", rand.Uint32()&0xffffff)
	have := 0
	for _, lv := range ls {
		add := lv - have
		t0 := time.Now()
		var step []*clientProc
		first := have
		for i := 0; i < *nProcs; i++ {
			n := add / *nProcs
			if i < add%*nProcs {
				n++
			}
			if n == 0 {
				continue
			}
			src := 2 + (len(workers)+len(step))%max(1, *sources)
			w, err := startWorker(self, dir, s, pfx, first, n, src)
			if err != nil {
				return tr, err
			}
			step = append(step, w)
			first += n
		}
		workers = append(workers, step...)
		for _, w := range step {
			if err := w.waitReady(ctx, 10*time.Minute); err != nil {
				return tr, err
			}
		}
		have = lv
		setup := time.Since(t0)
		time.Sleep(*settle)
		smp, err := sample(s, lv)
		if err != nil {
			return tr, err
		}
		l := report.IdleLevel{IdleSample: smp, SetupSec: setup.Seconds()}
		b := tr.Baseline
		n := float64(lv)
		l.RSSPerConnKB = float64(smp.RSSKiB-b.RSSKiB) * 1.024 / n
		l.RSSAfterGCPerConnKB = float64(smp.RSSAfterGCKiB-b.RSSAfterGCKiB) * 1.024 / n
		l.HeapPerConnKB = (float64(smp.HeapInuse) - float64(b.HeapInuse)) / 1000 / n
		l.StackPerConnKB = (float64(smp.StackInuse) - float64(b.StackInuse)) / 1000 / n
		l.GoroutinesPerConn = float64(smp.Goroutines-b.Goroutines) / n
		tr.Levels = append(tr.Levels, l)
		for name, pid := range s.others {
			if tr.Others == nil {
				tr.Others = map[string][]int64{}
			}
			tr.Others[name] = append(tr.Others[name], machine.ProcStatus(pid).RSSKiB)
		}
		fmt.Printf("%s %d connections (set up in %.1fs): RSS %.1f MiB (%.1f KB/conn), after GC %.1f MiB (%.1f KB/conn; heap %.1f + stacks %.1f KB), %d goroutines (%.2f/conn)\n",
			target, lv, setup.Seconds(), float64(smp.RSSKiB)/1024, l.RSSPerConnKB, float64(smp.RSSAfterGCKiB)/1024, l.RSSAfterGCPerConnKB,
			l.HeapPerConnKB, l.StackPerConnKB, smp.Goroutines, l.GoroutinesPerConn)
	}
	return tr, nil
}

func startWorker(self, dir string, s *server, pfx string, first, n, src int) (*clientProc, error) {
	logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("worker-%d.err", first)))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-worker", "-w-url", s.url, "-w-secret", s.secret, "-w-prefix", pfx,
		"-w-first", strconv.Itoa(first), "-w-count", strconv.Itoa(n), "-w-src", strconv.Itoa(src),
		"-group-size", strconv.Itoa(*gsize), "-dial-concurrency", strconv.Itoa(*dialPar))
	cmd.Stderr = logf
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	w := &clientProc{cmd: cmd, stdin: stdin, lines: make(chan string, 16), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case w.lines <- sc.Text():
			default:
			}
		}
	}()
	go func() { _ = cmd.Wait(); logf.Close(); close(w.done) }()
	return w, nil
}

func (w *clientProc) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.After(timeout)
	for {
		select {
		case l := <-w.lines:
			if strings.HasPrefix(l, "ready") {
				return nil
			}
			if strings.HasPrefix(l, "error") {
				return errors.New("client process: " + l)
			}
		case <-w.done:
			return errors.New("client process exited before it was ready")
		case <-deadline:
			return fmt.Errorf("client process not ready within %s", timeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// runWorker opens -w-count connections (users first..first+count-1),
// prints "ready N" once all are subscribed, then holds them until stdin
// closes.
func runWorker() error {
	if _, err := machine.RaiseNoFile(); err != nil {
		return err
	}
	srcs := make([]*http.Client, max(1, *sources))
	for i := range srcs {
		ip := net.IPv4(127, 0, 0, byte(2+(*wSrc-2+i)%max(1, *sources)))
		if *sources == 0 {
			ip = nil
		}
		d := &net.Dialer{Timeout: 30 * time.Second}
		if ip != nil {
			d.LocalAddr = &net.TCPAddr{IP: ip}
		}
		srcs[i] = &http.Client{Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: -1}}
	}
	ctx := context.Background()
	sem := make(chan struct{}, *dialPar)
	var wg sync.WaitGroup
	var failed atomic.Value
	var conns []*websocket.Conn
	var mu sync.Mutex
	for i := *wFirst; i < *wFirst+*wCount; i++ {
		if failed.Load() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := setupConn(ctx, srcs[i%len(srcs)], i)
			if err != nil {
				failed.CompareAndSwap(nil, fmt.Errorf("connection %d: %w", i, err))
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		return err
	}
	fmt.Println("ready", len(conns))
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// setupConn dials, says hello, joins and subscribes, then leaves one
// goroutine reading (which also answers the server's pings).
func setupConn(ctx context.Context, hc *http.Client, i int) (*websocket.Conn, error) {
	user := fmt.Sprintf("bench-idle-%s-u%d", *wPfx, i)
	group := fmt.Sprintf("bench-idle-%s-g%d", *wPfx, i / *gsize)
	tok, err := edge.Mint([]byte(*wSec), user, []string{"bench-*"}, 24*time.Hour, time.Now())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, *wURL, &websocket.DialOptions{Subprotocols: []string{"causeway.v1"}, HTTPClient: hc})
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(1 << 20)
	steps := []string{
		`{"type":"hello","id":"1","token":` + strconv.Quote(tok) + `}`,
		`{"type":"join","id":"2","group":` + strconv.Quote(group) + `}`,
		`{"type":"subscribe","id":"3","group":` + strconv.Quote(group) + `}`,
	}
	for k, f := range steps {
		if err := c.Write(ctx, websocket.MessageText, []byte(f)); err != nil {
			return nil, err
		}
		if err := awaitAnswer(ctx, c, strconv.Itoa(k+1)); err != nil {
			c.CloseNow()
			return nil, fmt.Errorf("%s: %w", f[:min(len(f), 30)], err)
		}
	}
	go func() {
		for {
			if _, _, err := c.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	return c, nil
}

// awaitAnswer reads frames until the one answering request id.
func awaitAnswer(ctx context.Context, c *websocket.Conn, id string) error {
	key := []byte(`"id":"` + id + `"`)
	for {
		_, msg, err := c.Read(ctx)
		if err != nil {
			return err
		}
		for _, line := range bytes.Split(msg, []byte("\n")) {
			if !bytes.Contains(line, key) {
				continue
			}
			if bytes.HasPrefix(line, []byte(`{"type":"error"`)) {
				return errors.New(string(line))
			}
			return nil
		}
	}
}
