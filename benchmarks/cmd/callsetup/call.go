package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/causeway/causeway/edge/client"
)

// loadWarmup is loadgen's -warmup when it runs as background load.
const loadWarmup = 3 * time.Second

// CallReport is the call scenario's part of the report.
type CallReport struct {
	Config struct {
		Pairs              int     `json:"pairs"`
		Edges              int     `json:"edges"`
		Placement          string  `json:"placement"`
		CallsPerSecPerPair float64 `json:"calls_per_sec_per_pair"`
		CallsPerSec        float64 `json:"calls_per_sec"`
		PayloadBytes       int     `json:"payload_bytes"`
		WarmupSec          float64 `json:"warmup_sec"`
		DurationSec        float64 `json:"duration_sec"`
		Load               bool    `json:"background_load"`
	} `json:"config"`
	SetupSec float64 `json:"setup_sec"`
	// SetupRetries counts failed probe offers/answers by error while the
	// pairs were being checked (a session's attach to its personal stream
	// is sequenced after its welcome: a signal sent at once may find it
	// offline).
	SetupRetries map[string]int `json:"setup_retries,omitempty"`
	// Measured calls: those whose offer's intended time is in the window.
	Calls          int64 `json:"calls"`
	OffersAcked    int64 `json:"offers_acked"`
	OffersReceived int64 `json:"offers_received"`
	AnswersAcked   int64 `json:"answers_acked"`
	Answered       int64 `json:"answered"`
	NotAnswered    int64 `json:"not_answered"`
	// Errors of every offer and answer of the run (warmup included).
	SignalErrors     int64          `json:"signal_errors"`
	SignalErrorKinds map[string]int `json:"signal_error_kinds,omitempty"`
	Duplicates       int64          `json:"duplicate_signals"`
	BadCallSeq       int64          `json:"unexpected_call_seq"`
	UnexpectedFrames map[string]int `json:"unexpected_frames,omitempty"`
	Disconnects      int64          `json:"disconnects"`
	AnsweredPerSec   float64        `json:"answered_calls_per_sec"`
	// intended offer send -> ...
	SetupMs map[string]float64 `json:"setup_ms"`        // ... answer received by the caller
	OfferMs map[string]float64 `json:"offer_ms"`        // ... offer received by the callee
	AckMs   map[string]float64 `json:"offer_ack_ms"`    // ... the caller's ack of the offer
	LegMs   map[string]float64 `json:"answer_leg_ms"`   // answer sent -> received by the caller
	LateMs  map[string]float64 `json:"offer_late_ms"`   // intended -> actual write of the offer (generator lag)
	Edge    map[string]float64 `json:"edge_per_sec"`    // edges' counters per second of the window
	EdgeEnd map[string]float64 `json:"edge_totals_end"` // slow consumers, expired signals at the end
	// CPU during the measured window, in cores.
	ClusterCPUCores   float64     `json:"cluster_cpu_cores"`
	GeneratorCPUCores float64     `json:"generator_cpu_cores"`
	LoadgenCPUCores   float64     `json:"loadgen_cpu_cores,omitempty"`
	IRQCores          float64     `json:"irq_softirq_cores"` // not charged to any process
	OtherCPUCores     float64     `json:"other_cpu_cores"`   // other processes on the machine
	Background        *Background `json:"background,omitempty"`
	Failures          []string    `json:"failures,omitempty"`
}

// Background is loadgen's run, as it reported it.
type Background struct {
	Command                 string             `json:"command"`
	ExitCode                int                `json:"exit_code"`
	OfferedDeliveriesPerSec float64            `json:"offered_deliveries_per_sec"`
	DeliveredPerSec         float64            `json:"delivered_per_sec"`
	Lost                    int64              `json:"lost"`
	SendErrors              int64              `json:"send_errors"`
	Disconnects             int64              `json:"disconnects"`
	LatencyMs               map[string]float64 `json:"latency_ms"`
	CPUCores                float64            `json:"cpu_cores"`
	Pass                    bool               `json:"pass"`
	Failures                []string           `json:"failures,omitempty"`
	ReportFile              string             `json:"report_file"`
	Report                  json.RawMessage    `json:"report,omitempty"`
}

type pair struct {
	idx                    int
	callerUser, calleeUser string
	caller, callee         *client.Client

	mu    sync.Mutex
	calls map[string]*call
}

type call struct {
	intended   time.Time
	measured   bool
	probe      bool
	offerAt    time.Time
	answerSent time.Time
	answerAt   time.Time
	answered   chan struct{}
}

type callRun struct {
	pairs    []*pair
	payload  json.RawMessage
	stopping atomic.Bool

	mu                           sync.Mutex
	setupH, offerH, ackH, legH   *hdrhistogram.Histogram
	lateH                        *hdrhistogram.Histogram
	errKinds, setupErrs, unexpFr map[string]int

	calls, offersAcked, offersRecv, answersAcked, answered atomic.Int64
	sigErrs, dups, badSeq, disconnects                     atomic.Int64
	outstanding                                            atomic.Int64
}

func (r *callRun) record(h *hdrhistogram.Histogram, d time.Duration) {
	r.mu.Lock()
	_ = h.RecordValue(max(d.Microseconds(), 1))
	r.mu.Unlock()
}

func (r *callRun) count(m map[string]int, k string) {
	r.mu.Lock()
	m[k]++
	r.mu.Unlock()
}

func runCalls(ctx context.Context, e *env) (*CallReport, error) {
	rep := &CallReport{}
	cfg := &rep.Config
	cfg.Pairs, cfg.Edges = *pairs, len(e.urls)
	cfg.Placement = "caller i on edge i mod E, its callee on edge (i+1) mod E"
	if e.floor != nil {
		cfg.Placement = "caller and callee on the one floor process"
	}
	cfg.CallsPerSecPerPair, cfg.CallsPerSec = *callRate, *callRate*float64(*pairs)
	cfg.PayloadBytes, cfg.WarmupSec, cfg.DurationSec, cfg.Load = *payloadBytes, warmup.Seconds(), duration.Seconds(), *load

	r := &callRun{
		setupH: newHist(), offerH: newHist(), ackH: newHist(), legH: newHist(), lateH: newHist(),
		errKinds: map[string]int{}, setupErrs: map[string]int{}, unexpFr: map[string]int{},
	}
	sdp := strings.Repeat("x", *payloadBytes-len(`{"sdp":""}`))
	r.payload = json.RawMessage(`{"sdp":"` + sdp + `"}`)
	var rb [3]byte
	_, _ = rand.Read(rb[:])
	pfx := fmt.Sprintf("%x", rb)
	for i := 0; i < *pairs; i++ {
		r.pairs = append(r.pairs, &pair{idx: i, calls: map[string]*call{},
			callerUser: fmt.Sprintf("bench-cs%s-caller%d", pfx, i), calleeUser: fmt.Sprintf("bench-cs%s-callee%d", pfx, i)})
	}
	defer r.closeAll()

	t0 := time.Now()
	fmt.Printf("call setup: %d pairs (%d connections) on %d edges, %.4g calls/s per pair (%.4g calls/s), %d-byte payloads\n",
		*pairs, 2**pairs, len(e.urls), *callRate, cfg.CallsPerSec, *payloadBytes)
	if err := r.connect(ctx, e); err != nil {
		return nil, err
	}
	if err := r.probe(ctx); err != nil {
		return nil, err
	}
	rep.SetupSec = time.Since(t0).Seconds()
	fmt.Printf("setup: %d pairs connected and each checked with one full offer/answer in %.1fs\n", *pairs, rep.SetupSec)

	var bg *bgLoad
	if *load {
		var err error
		bg, err = startLoadgen(ctx, e)
		if err != nil {
			return nil, err
		}
		defer bg.kill()
		fmt.Printf("background: loadgen set up (%s); waiting out its %v warmup\n", *loadArgs, loadWarmup)
		sleepUntil(ctx, time.Now().Add(loadWarmup+100*time.Millisecond))
	}

	start := time.Now().Add(20 * time.Millisecond)
	mStart := start.Add(*warmup)
	mEnd := mStart.Add(*duration)
	var swg sync.WaitGroup
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	interval := time.Duration(float64(time.Second) / *callRate)
	for _, p := range r.pairs {
		phase := interval * time.Duration(p.idx) / time.Duration(len(r.pairs))
		swg.Add(1)
		go func() { defer swg.Done(); r.schedule(sctx, p, start.Add(phase), interval, mStart, mEnd) }()
	}

	var cpu0, cpu1, self0, self1, busy0, busy1, irq0, irq1, lg0, lg1 time.Duration
	var m0, m1 map[string]float64
	names, endNames := e.counters()
	sleepUntil(ctx, mStart)
	cpu0, self0, lg0 = e.serverCPU(), selfCPU(), bg.cpu()
	busy0, irq0 = machineBusy()
	m0 = edgeCounters(e.urls, names...)
	sleepUntil(ctx, mEnd)
	cpu1, self1, lg1 = e.serverCPU(), selfCPU(), bg.cpu()
	busy1, irq1 = machineBusy()
	m1 = edgeCounters(e.urls, names...)
	swg.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	// Drain: every measured call whose offer was acked should be answered.
	deadline := time.Now().Add(*drain)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if r.outstanding.Load() == 0 && r.answered.Load() >= r.offersAcked.Load() && r.answersAcked.Load() >= r.answered.Load() {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.stopping.Store(true)

	dur := duration.Seconds()
	rep.Calls, rep.OffersAcked, rep.OffersReceived = r.calls.Load(), r.offersAcked.Load(), r.offersRecv.Load()
	rep.AnswersAcked, rep.Answered = r.answersAcked.Load(), r.answered.Load()
	rep.NotAnswered = rep.Calls - rep.Answered
	rep.AnsweredPerSec = float64(rep.Answered) / dur
	rep.SignalErrors, rep.Duplicates, rep.BadCallSeq, rep.Disconnects = r.sigErrs.Load(), r.dups.Load(), r.badSeq.Load(), r.disconnects.Load()
	r.mu.Lock()
	rep.SetupMs, rep.OfferMs, rep.AckMs, rep.LegMs, rep.LateMs = quantiles(r.setupH), quantiles(r.offerH), quantiles(r.ackH), quantiles(r.legH), quantiles(r.lateH)
	if len(r.errKinds) > 0 {
		rep.SignalErrorKinds = r.errKinds
	}
	if len(r.setupErrs) > 0 {
		rep.SetupRetries = r.setupErrs
	}
	if len(r.unexpFr) > 0 {
		rep.UnexpectedFrames = r.unexpFr
	}
	r.mu.Unlock()
	rep.Edge = map[string]float64{}
	for _, n := range names {
		rep.Edge[n] = (m1[n] - m0[n]) / dur
	}
	rep.EdgeEnd = edgeCounters(e.urls, endNames...)
	if e.local() {
		rep.ClusterCPUCores = (cpu1 - cpu0).Seconds() / dur
	}
	rep.GeneratorCPUCores = (self1 - self0).Seconds() / dur
	rep.LoadgenCPUCores = (lg1 - lg0).Seconds() / dur
	if busy0 > 0 {
		rep.IRQCores = (irq1 - irq0).Seconds() / dur
		rep.OtherCPUCores = max(0, (busy1-busy0).Seconds()/dur-rep.ClusterCPUCores-rep.GeneratorCPUCores-rep.LoadgenCPUCores-rep.IRQCores)
	}

	if bg != nil {
		rep.Background = bg.wait()
	}

	fail := func(f string, a ...any) { rep.Failures = append(rep.Failures, fmt.Sprintf(f, a...)) }
	if rep.Calls == 0 {
		fail("no call was measured")
	}
	if rep.NotAnswered > 0 {
		fail("%d of %d calls not answered", rep.NotAnswered, rep.Calls)
	}
	if rep.SignalErrors > 0 {
		fail("%d signal errors %v", rep.SignalErrors, rep.SignalErrorKinds)
	}
	if rep.Duplicates > 0 || rep.BadCallSeq > 0 {
		fail("%d duplicate signals, %d unexpected call_seq", rep.Duplicates, rep.BadCallSeq)
	}
	if rep.Disconnects > 0 {
		fail("%d connections ended during the run", rep.Disconnects)
	}
	if n := rep.EdgeEnd[mSlow] + rep.EdgeEnd[mExpired]; n > 0 {
		fail("edges: %.0f slow-consumer disconnects, %.0f expired signals", rep.EdgeEnd[mSlow], rep.EdgeEnd[mExpired])
	}
	if n := rep.EdgeEnd[mFloorSlow]; n > 0 {
		fail("floor: %.0f slow-consumer disconnects", n)
	}
	if b := rep.Background; b != nil && !b.Pass {
		fail("background loadgen: exit %d %v", b.ExitCode, b.Failures)
	}
	return rep, nil
}

// connect dials every caller and callee (on different edges) and starts
// their readers.
func (r *callRun) connect(ctx context.Context, e *env) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, *dialPar)
	var wg sync.WaitGroup
	for _, p := range r.pairs {
		for _, callee := range []bool{false, true} {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
				defer dcancel()
				user, idx := p.callerUser, p.idx
				if callee {
					user, idx = p.calleeUser, p.idx+1
				}
				c, err := e.dial(dctx, user, idx, nil)
				if err != nil {
					cancel(fmt.Errorf("dial %s: %w", user, err))
					return
				}
				// Under the default edge.reach (shared_group) users reach
				// each other only through a group they share.
				if err := c.Join(dctx, pairGroup(p.callerUser)); err != nil {
					cancel(fmt.Errorf("%s joins the pair's group: %w", user, err))
					return
				}
				if callee {
					p.callee = c
					go r.calleeLoop(p)
				} else {
					p.caller = c
					go r.callerLoop(p)
				}
			}()
		}
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	for _, p := range r.pairs {
		if e.floor == nil && p.caller.Edge() == p.callee.Edge() {
			return fmt.Errorf("pair %d: caller and callee both on %s", p.idx, p.caller.Edge())
		}
	}
	return nil
}

// probe makes one full offer/answer per pair, retrying until it works: a
// fresh session's attach to its personal stream may be sequenced after
// the first signal to it.
func (r *callRun) probe(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for _, p := range r.pairs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(30 * time.Second)
			for n := 0; time.Now().Before(deadline) && ctx.Err() == nil; n++ {
				id := fmt.Sprintf("probe-%d-%d", p.idx, n)
				c := &call{intended: time.Now(), probe: true, answered: make(chan struct{})}
				p.mu.Lock()
				p.calls[id] = c
				p.mu.Unlock()
				sctx, scancel := context.WithTimeout(ctx, *sigTimeout)
				err := p.caller.Signal(sctx, p.calleeUser, "", id, "offer", r.payload)
				scancel()
				if err != nil {
					r.count(r.setupErrs, "offer "+errKind(err))
					time.Sleep(50 * time.Millisecond)
					continue
				}
				select {
				case <-c.answered:
					return
				case <-time.After(2 * time.Second):
				case <-ctx.Done():
				}
			}
			cancel(fmt.Errorf("pair %d: no offer/answer round trip within 30s (setup errors %v)", p.idx, r.setupErrs))
		}()
	}
	wg.Wait()
	return context.Cause(ctx)
}

// schedule starts one call every interval from first until mEnd, without
// waiting for earlier calls: a late answer never delays the next offer.
func (r *callRun) schedule(ctx context.Context, p *pair, first time.Time, interval time.Duration, mStart, mEnd time.Time) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for k := 0; ; k++ {
		intended := first.Add(time.Duration(k) * interval)
		if !intended.Before(mEnd) || ctx.Err() != nil {
			return
		}
		sleepUntil(ctx, intended)
		if ctx.Err() != nil {
			return
		}
		c := &call{intended: intended, measured: !intended.Before(mStart)}
		id := fmt.Sprintf("call-%d-%d", p.idx, k)
		p.mu.Lock()
		p.calls[id] = c
		p.mu.Unlock()
		if c.measured {
			r.calls.Add(1)
			r.outstanding.Add(1)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c.measured {
				defer r.outstanding.Add(-1)
				r.record(r.lateH, time.Since(c.intended))
			}
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), *sigTimeout)
			defer cancel()
			err := p.caller.Signal(sctx, p.calleeUser, "", id, "offer", r.payload)
			if err != nil {
				r.sigErrs.Add(1)
				r.count(r.errKinds, "offer "+errKind(err))
				return
			}
			if c.measured {
				r.offersAcked.Add(1)
				r.record(r.ackH, time.Since(c.intended))
			}
		}()
	}
}

// calleeLoop answers every offer at once, to the caller's session.
func (r *callRun) calleeLoop(p *pair) {
	for f := range p.callee.Events() {
		now := time.Now()
		if f.Type != "signal" || f.Kind != "offer" {
			r.count(r.unexpFr, "callee "+frameName(f))
			continue
		}
		if f.CallSeq != 1 || f.From != p.callerUser {
			r.badSeq.Add(1)
		}
		p.mu.Lock()
		c := p.calls[f.Call]
		dup := c != nil && !c.offerAt.IsZero()
		if c != nil && !dup {
			c.offerAt = now
			c.answerSent = time.Now()
		}
		p.mu.Unlock()
		switch {
		case c == nil:
			r.count(r.unexpFr, "callee offer of an unknown call")
			continue
		case dup:
			r.dups.Add(1)
			continue
		}
		if c.measured {
			r.offersRecv.Add(1)
			r.record(r.offerH, now.Sub(c.intended))
		}
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), *sigTimeout)
			defer cancel()
			err := p.callee.Signal(ctx, p.callerUser, f.FromSession, f.Call, "answer", r.payload)
			switch {
			case err != nil && c.probe:
				r.count(r.setupErrs, "answer "+errKind(err))
			case err != nil:
				r.sigErrs.Add(1)
				r.count(r.errKinds, "answer "+errKind(err))
			case c.measured:
				r.answersAcked.Add(1)
			}
		}()
	}
	r.ended(p.callee)
}

// callerLoop records each answer.
func (r *callRun) callerLoop(p *pair) {
	for f := range p.caller.Events() {
		now := time.Now()
		if f.Type != "signal" || f.Kind != "answer" {
			r.count(r.unexpFr, "caller "+frameName(f))
			continue
		}
		if f.CallSeq != 1 || f.From != p.calleeUser {
			r.badSeq.Add(1)
		}
		p.mu.Lock()
		c := p.calls[f.Call]
		dup := c != nil && !c.answerAt.IsZero()
		var sent time.Time
		if c != nil && !dup {
			c.answerAt, sent = now, c.answerSent
		}
		p.mu.Unlock()
		switch {
		case c == nil:
			r.count(r.unexpFr, "caller answer of an unknown call")
			continue
		case dup:
			r.dups.Add(1)
			continue
		}
		if c.answered != nil {
			close(c.answered)
		}
		if c.measured {
			r.answered.Add(1)
			r.record(r.setupH, now.Sub(c.intended))
			r.record(r.legH, now.Sub(sent))
		}
	}
	r.ended(p.caller)
}

func frameName(f client.Frame) string {
	if f.Type == "signal" {
		return "signal/" + f.Kind
	}
	if f.Type == "error" {
		return "error/" + f.Code
	}
	return f.Type
}

func (r *callRun) ended(c *client.Client) {
	<-c.Done()
	if !r.stopping.Load() {
		r.disconnects.Add(1)
		fmt.Fprintf(os.Stderr, "callsetup: %s disconnected: %v\n", c.User(), c.Err())
	}
}

func (r *callRun) closeAll() {
	r.stopping.Store(true)
	var wg sync.WaitGroup
	for _, p := range r.pairs {
		for _, c := range []*client.Client{p.caller, p.callee} {
			if c == nil {
				continue
			}
			wg.Add(1)
			go func() { defer wg.Done(); _ = c.Close() }()
		}
	}
	wg.Wait()
}

// bgLoad is loadgen running against the same edges.
type bgLoad struct {
	cmd     *exec.Cmd
	args    []string
	outPath string
	logPath string
	done    chan struct{}
}

func (b *bgLoad) cpu() time.Duration {
	if b == nil {
		return 0
	}
	return procCPU(b.cmd.Process.Pid)
}

// startLoadgen starts loadgen (own process) against e's edges and returns
// once it has connected its members, when its warmup begins. Its
// measured window covers this program's warmup and window.
func startLoadgen(ctx context.Context, e *env) (*bgLoad, error) {
	bin := *loadgenBin
	if bin == "" {
		var err error
		if bin, err = goBuild(e.dir, "loadgen", "./benchmarks/cmd/loadgen"); err != nil {
			return nil, err
		}
	}
	outPath := *loadOut
	if outPath == "" {
		outPath = strings.TrimSuffix(*out, ".json") + "-loadgen.json"
		if *out == "-" {
			outPath = filepath.Join(e.dir, "loadgen.json")
		}
	}
	lgDur := *warmup + *duration + 2*time.Second
	args := append(strings.Fields(*loadArgs),
		"-url", strings.Join(e.urls, ","), "-secret", string(e.secret),
		"-warmup", loadWarmup.String(), "-duration", lgDur.String(), "-progress", "0", "-out", outPath)
	b := &bgLoad{args: append([]string{bin}, args...), outPath: outPath, logPath: filepath.Join(e.dir, "loadgen.out"), done: make(chan struct{})}
	logf, err := os.Create(b.logPath)
	if err != nil {
		return nil, err
	}
	b.cmd = exec.Command(bin, args...)
	b.cmd.Stderr = logf
	stdout, err := b.cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := b.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start loadgen: %w", err)
	}
	ready := make(chan struct{})
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stdout)
		once := false
		for sc.Scan() {
			l := sc.Text()
			fmt.Fprintln(logf, l)
			if !once && strings.HasPrefix(l, "setup:") {
				once = true
				close(ready)
			}
		}
		_, _ = io.Copy(logf, stdout)
	}()
	go func() { <-scanned; _ = b.cmd.Wait(); logf.Close(); close(b.done) }()
	select {
	case <-ready:
		return b, nil
	case <-b.done:
		return nil, fmt.Errorf("loadgen exited during setup: %s", tail(b.logPath))
	case <-time.After(90 * time.Second):
		b.kill()
		return nil, fmt.Errorf("loadgen did not finish its setup within 90s: %s", tail(b.logPath))
	case <-ctx.Done():
		b.kill()
		return nil, ctx.Err()
	}
}

// wait waits for loadgen to finish (drain, summary, report) and reads its
// report.
func (b *bgLoad) wait() *Background {
	bg := &Background{Command: strings.Join(b.args, " "), ReportFile: b.outPath, ExitCode: -1}
	select {
	case <-b.done:
	case <-time.After(90 * time.Second):
		fmt.Fprintln(os.Stderr, "callsetup: loadgen did not finish within 90s; killing it")
		b.kill()
	}
	if st := b.cmd.ProcessState; st != nil {
		bg.ExitCode = st.ExitCode()
	}
	raw, err := os.ReadFile(b.outPath)
	if err != nil {
		bg.Failures = []string{"no report: " + err.Error() + ": " + tail(b.logPath)}
		return bg
	}
	if err := json.Unmarshal(raw, bg); err != nil {
		bg.Failures = append(bg.Failures, "unreadable report: "+err.Error())
	}
	bg.Command = strings.Join(b.args, " ")
	bg.Report = json.RawMessage(raw)
	return bg
}

func (b *bgLoad) kill() {
	select {
	case <-b.done:
		return
	default:
	}
	_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
	<-b.done
}

func printCall(rep *Report) {
	c := rep.Call
	q := func(m map[string]float64) string {
		return fmt.Sprintf("p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f  (%.0f samples)", m["p50"], m["p90"], m["p99"], m["p999"], m["max"], m["count"])
	}
	bgLine := "none"
	if b := c.Background; b != nil {
		bgLine = fmt.Sprintf("loadgen %.0f deliveries/s offered, %.0f/s delivered, lost %d, send errors %d, p50 %.1f p99 %.1f max %.1f ms, %.2f cores, exit %d",
			b.OfferedDeliveriesPerSec, b.DeliveredPerSec, b.Lost, b.SendErrors, b.LatencyMs["p50"], b.LatencyMs["p99"], b.LatencyMs["max"], b.CPUCores, b.ExitCode)
	}
	fmt.Printf(`
== call setup summary (%s; %d CPUs, %s)
pairs                %d on %d edges (%s), %.4g calls/s/pair = %.4g calls/s, %d-byte payloads
measured             %.0fs after %.0fs warmup
background           %s
calls                %d measured: offers acked %d, received %d; answers acked %d, received %d; not answered %d
errors               %d signal errors %v; %d duplicates; %d unexpected call_seq; unexpected frames %v; %d disconnects
setup retries        %v
setup (offer->answer at caller, ms)  %s
offer (-> callee, ms)                %s
answer leg (callee send -> caller)   %s
offer ack (ms)                       %s
%s
cpu (cores)          server %.2f, this generator %.2f, loadgen %.2f, irq/softirq %.2f, other processes %.2f (load average %s)
`,
		rep.Cluster, rep.Machine.CPUs, rep.Machine.GoVersion,
		c.Config.Pairs, c.Config.Edges, c.Config.Placement, c.Config.CallsPerSecPerPair, c.Config.CallsPerSec, c.Config.PayloadBytes,
		c.Config.DurationSec, c.Config.WarmupSec, bgLine,
		c.Calls, c.OffersAcked, c.OffersReceived, c.AnswersAcked, c.Answered, c.NotAnswered,
		c.SignalErrors, c.SignalErrorKinds, c.Duplicates, c.BadCallSeq, c.UnexpectedFrames, c.Disconnects,
		c.SetupRetries,
		q(c.SetupMs), q(c.OfferMs), q(c.LegMs), q(c.AckMs),
		countersLine(c),
		c.ClusterCPUCores, c.GeneratorCPUCores, c.LoadgenCPUCores, c.IRQCores, c.OtherCPUCores, loadAvg())
	if len(c.Failures) == 0 {
		fmt.Println("result               PASS (every call answered, no signal error, no duplicate)")
	} else {
		fmt.Println("result               FAIL:", strings.Join(c.Failures, "; "))
	}
}

// countersLine is the server's counters per second of the window.
func countersLine(c *CallReport) string {
	if _, ok := c.Edge[mFloorFrames]; ok {
		return fmt.Sprintf("floor                frames out %.0f/s, signals relayed %.0f/s", c.Edge[mFloorFrames], c.Edge[mFloorSignals])
	}
	return fmt.Sprintf("edges                frames out %.0f/s, delivery records %.0f/s", c.Edge[mFramesOut], c.Edge[mDeliveries])
}

// pairGroup is the group a caller and its callee share.
func pairGroup(caller string) string { return caller + "-pair" }
