package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/causeway/causeway/benchmarks/internal/report"
	"github.com/causeway/causeway/edge/client"
)

// PresenceLevel is one presence run: W watchers of one user X.
type PresenceLevel struct {
	Watchers      int            `json:"watchers"`
	WatcherEdges  map[string]int `json:"watchers_per_edge"`
	XEdge         string         `json:"x_edge"`
	SetupSec      float64        `json:"setup_sec"`
	InitialFrames int            `json:"watchers_with_initial_state"`
	Spaced        SpacedPhase    `json:"spaced"`
	Flap          FlapPhase      `json:"flap"`
	Unexpected    map[string]int `json:"unexpected_frames,omitempty"`
	Disconnects   int64          `json:"disconnects"`
	// CPU over the whole level (setup included), in cores.
	ClusterCPUCores float64  `json:"cluster_cpu_cores"`
	OtherCPUCores   float64  `json:"other_cpu_cores"` // other processes and irq/softirq
	Failures        []string `json:"failures,omitempty"`
}

// SpacedPhase: X's changes are -spacing apart, more than the presence
// window, so each is pushed to every watcher.
type SpacedPhase struct {
	Changes    int     `json:"changes"`
	SpacingMs  float64 `json:"spacing_ms"`
	Frames     int     `json:"frames"`
	PerChange  float64 `json:"frames_per_change"`
	PerWatcher float64 `json:"frames_per_watcher_per_change"`
	Missing    int     `json:"missing"`    // watcher x change with no frame of the new state
	Extra      int     `json:"extra"`      // frames beyond one per watcher and change
	LatencyMs  dist    `json:"latency_ms"` // X's change begins -> the watcher has the new state
	EdgeFrames float64 `json:"edge_frames_out_per_change"`
	EdgeRecs   float64 `json:"edge_delivery_records_per_change"`
	ClusterCPU float64 `json:"cluster_cpu_cores"`
}

// FlapPhase: X connects and disconnects faster than the window.
type FlapPhase struct {
	Changes       int     `json:"changes"`
	IntervalMs    float64 `json:"interval_ms"`
	DurationSec   float64 `json:"duration_sec"` // first change to last change
	Frames        int     `json:"frames"`
	Uncoalesced   int     `json:"frames_without_coalescing"` // changes x watchers
	PerWatcherMin int     `json:"frames_per_watcher_min"`
	PerWatcherAvg float64 `json:"frames_per_watcher_mean"`
	PerWatcherMax int     `json:"frames_per_watcher_max"`
	Bound         int     `json:"bound_per_watcher"` // floor(duration/window)+2
	MaxInWindow   int     `json:"max_frames_in_any_window"`
	FinalCorrect  int     `json:"watchers_ending_online"`
	// AlreadyFinal: watchers whose last frame came before X's last change
	// (the state pushed earlier in the window was already the final one,
	// so nothing more was sent); they count as 0 in FinalMs.
	AlreadyFinal int     `json:"watchers_final_before_last_change"`
	FinalMs      dist    `json:"final_state_ms"` // X's last change begins -> the watcher has the final state
	EdgeFrames   float64 `json:"edge_frames_out"`
	EdgeRecs     float64 `json:"edge_delivery_records"`
}

// dist and quant are the suite's shared latency distribution.
type dist = report.Dist

func quant(d []time.Duration) dist { return report.Quantiles(d) }

type pframe struct {
	at       time.Time
	status   string
	sessions uint32
}

type watcher struct {
	user string
	c    *client.Client
	mu   sync.Mutex
	seen []pframe
}

func (w *watcher) frames() []pframe {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.seen)
}

type change struct {
	at     time.Time
	status string
}

func runPresence(ctx context.Context, e *env, nw int) (*PresenceLevel, error) {
	lv := &PresenceLevel{Watchers: nw, WatcherEdges: map[string]int{}}
	var rb [3]byte
	_, _ = rand.Read(rb[:])
	pfx := fmt.Sprintf("%x", rb)
	xUser := fmt.Sprintf("bench-pr%s-x", pfx)
	fmt.Printf("\npresence: %d watchers of %s on %d edges\n", nw, xUser, len(e.urls))

	var stopping atomic.Bool
	var disconnects atomic.Int64
	var umu sync.Mutex
	unexpected := map[string]int{}
	ws := make([]*watcher, nw)
	defer func() {
		stopping.Store(true)
		sem := make(chan struct{}, 128)
		var wg sync.WaitGroup
		for _, w := range ws {
			if w == nil || w.c == nil {
				continue
			}
			sem <- struct{}{}
			wg.Add(1)
			go func() { defer func() { <-sem; wg.Done() }(); _ = w.c.Close() }()
		}
		wg.Wait()
	}()

	// X is a member of the group the watchers share with it before any
	// of them watches (edge.reach shared_group, the default): a watch of
	// a user who shares no group is refused. Membership is durable; X
	// leaves until the measurement connects it.
	if c, err := e.dial(ctx, xUser, 0, nil); err != nil {
		return nil, fmt.Errorf("X connect: %w", err)
	} else {
		err := c.Join(ctx, xUser+"-watched")
		_ = c.Close()
		if err != nil {
			return nil, fmt.Errorf("X joins its group: %w", err)
		}
	}

	t0 := time.Now()
	lc0, ls0 := e.dev.cpu(), selfCPU()
	lb0, _ := machineBusy()
	sctx, cancel := context.WithCancelCause(ctx)
	sem := make(chan struct{}, *dialPar)
	var wg sync.WaitGroup
	for i := range ws {
		w := &watcher{user: fmt.Sprintf("bench-pr%s-w%d", pfx, i)}
		ws[i] = w
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			dctx, dcancel := context.WithTimeout(sctx, 30*time.Second)
			defer dcancel()
			c, err := e.dial(dctx, w.user, i, nil)
			if err != nil {
				cancel(fmt.Errorf("watcher %s: %w", w.user, err))
				return
			}
			// Presence of a user is visible to those sharing a group with
			// it (edge.reach shared_group, the default).
			if err := c.Join(dctx, xUser+"-watched"); err != nil {
				cancel(fmt.Errorf("watcher %s joins X's group: %w", w.user, err))
				return
			}
			w.mu.Lock()
			w.c = c
			w.mu.Unlock()
			go func() {
				for f := range c.Events() {
					now := time.Now()
					if f.Type == "presence" && f.User == xUser && f.Group == "" {
						w.mu.Lock()
						w.seen = append(w.seen, pframe{at: now, status: f.Status, sessions: f.Sessions})
						w.mu.Unlock()
						continue
					}
					umu.Lock()
					unexpected[frameName(f)]++
					umu.Unlock()
				}
				if !stopping.Load() {
					disconnects.Add(1)
					fmt.Fprintf(os.Stderr, "callsetup: watcher %s disconnected: %v\n", w.user, c.Err())
				}
			}()
			if err := c.Presence(dctx, xUser); err != nil {
				cancel(fmt.Errorf("watcher %s presence: %w", w.user, err))
			}
		}()
	}
	wg.Wait()
	err := context.Cause(sctx)
	cancel(nil)
	if err != nil {
		return nil, err
	}
	for _, w := range ws {
		lv.WatcherEdges[w.c.Edge()]++
	}
	// Every watcher first gets X's current state (offline, never seen).
	waitFor(ctx, ws, 15*time.Second, func(f []pframe) bool { return len(f) >= 1 })
	for _, w := range ws {
		if f := w.frames(); len(f) >= 1 && f[0].status == "offline" {
			lv.InitialFrames++
		}
	}
	lv.SetupSec = time.Since(t0).Seconds()
	fmt.Printf("setup: %d watchers connected and watching in %.1fs (%d got the initial state)\n", nw, lv.SetupSec, lv.InitialFrames)

	var x *client.Client
	xEvents := func(c *client.Client) {
		go func() {
			for range c.Events() {
			}
		}()
	}
	xDial := func() error {
		c, err := e.dial(ctx, xUser, 0, nil)
		if err != nil {
			return fmt.Errorf("X connect: %w", err)
		}
		xEvents(c)
		lv.XEdge, x = c.Edge(), c
		return nil
	}
	defer func() {
		if x != nil {
			_ = x.Close()
		}
	}()
	names := []string{mFramesOut, mDeliveries}

	// Spaced changes: each one pushed.
	sp := &lv.Spaced
	sp.SpacingMs = float64(*spacing) / 1e6
	var changes []change
	m0 := edgeCounters(e.urls, names...)
	c0 := e.dev.cpu()
	p0 := time.Now()
	connects := 0
	for i := 0; i < 2**spaced && ctx.Err() == nil; i++ {
		ch := change{at: time.Now(), status: "online"}
		if i%2 == 0 {
			if err := xDial(); err != nil {
				return nil, err
			}
			connects++
		} else {
			ch.status = "offline"
			_ = x.Close()
			x = nil
		}
		changes = append(changes, ch)
		waitFor(ctx, ws, 10*time.Second, func(f []pframe) bool {
			return len(f) > 0 && f[len(f)-1].status == ch.status && !f[len(f)-1].at.Before(ch.at)
		})
		sleepUntil(ctx, ch.at.Add(*spacing))
	}
	pEnd := time.Now()
	m1 := edgeCounters(e.urls, names...)
	c1 := e.dev.cpu()
	sp.Changes = len(changes)
	var lat []time.Duration
	for _, w := range ws {
		fr := w.frames()
		for j, ch := range changes {
			end := pEnd
			if j+1 < len(changes) {
				end = changes[j+1].at
			}
			n, got := 0, false
			for _, f := range fr {
				if f.at.Before(ch.at) || !f.at.Before(end) {
					continue
				}
				n++
				if !got && f.status == ch.status {
					got = true
					lat = append(lat, f.at.Sub(ch.at))
				}
			}
			sp.Frames += n
			if !got {
				sp.Missing++
			}
			if n > 1 {
				sp.Extra += n - 1
			}
		}
	}
	sp.LatencyMs = quant(lat)
	if sp.Changes > 0 {
		sp.PerChange = float64(sp.Frames) / float64(sp.Changes)
		sp.PerWatcher = sp.PerChange / float64(nw)
		// Minus X's own welcome on each connect.
		sp.EdgeFrames = (m1[mFramesOut] - m0[mFramesOut] - float64(connects)) / float64(sp.Changes)
		sp.EdgeRecs = (m1[mDeliveries] - m0[mDeliveries]) / float64(sp.Changes)
	}
	if d := pEnd.Sub(p0).Seconds(); d > 0 && e.dev != nil {
		sp.ClusterCPU = (c1 - c0).Seconds() / d
	}

	// Fast changes: coalesced per window.
	fl := &lv.Flap
	fl.IntervalMs = float64(*flapInterval) / 1e6
	m0 = edgeCounters(e.urls, names...)
	fStart := time.Now()
	var last time.Time
	// 2*flaps+1 changes: X ends online, a state the watchers must learn
	// even when it comes inside a window (flushed on a later record of
	// the stream's partition: the next edge heartbeat).
	for i := 0; i < 2**flaps+1 && ctx.Err() == nil; i++ {
		sleepUntil(ctx, fStart.Add(time.Duration(i)**flapInterval))
		last = time.Now()
		if i%2 == 0 {
			if err := xDial(); err != nil {
				return nil, err
			}
		} else {
			_ = x.Close()
			x = nil
		}
		fl.Changes++
	}
	fl.DurationSec = last.Sub(fStart).Seconds()
	sleepUntil(ctx, last.Add(*settle))
	m1 = edgeCounters(e.urls, names...)
	fl.EdgeFrames = m1[mFramesOut] - m0[mFramesOut] - float64(*flaps+1) // X's welcomes
	fl.EdgeRecs = m1[mDeliveries] - m0[mDeliveries]
	fl.Uncoalesced = fl.Changes * nw
	fl.Bound = int(last.Sub(fStart)/(*window)) + 2
	fl.PerWatcherMin = -1
	var finals []time.Duration
	for _, w := range ws {
		var mine []pframe
		for _, f := range w.frames() {
			if !f.at.Before(fStart) {
				mine = append(mine, f)
			}
		}
		n := len(mine)
		fl.Frames += n
		if fl.PerWatcherMin < 0 || n < fl.PerWatcherMin {
			fl.PerWatcherMin = n
		}
		fl.PerWatcherMax = max(fl.PerWatcherMax, n)
		for i := range mine { // frames received within one window of each other
			k := i
			for k+1 < n && mine[k+1].at.Sub(mine[i].at) < *window {
				k++
			}
			fl.MaxInWindow = max(fl.MaxInWindow, k-i+1)
		}
		if n > 0 && mine[n-1].status == "online" && mine[n-1].sessions == 1 {
			fl.FinalCorrect++
			d := mine[n-1].at.Sub(last)
			if d < 0 {
				fl.AlreadyFinal++
				d = 0
			}
			finals = append(finals, d)
		}
	}
	fl.PerWatcherAvg = float64(fl.Frames) / float64(nw)
	fl.FinalMs = quant(finals)

	if el := time.Since(t0).Seconds(); e.dev != nil {
		lb1, _ := machineBusy()
		lv.ClusterCPUCores = (e.dev.cpu() - lc0).Seconds() / el
		lv.OtherCPUCores = max(0, (lb1-lb0-(selfCPU()-ls0)).Seconds()/el-lv.ClusterCPUCores)
	}
	umu.Lock()
	if len(unexpected) > 0 {
		lv.Unexpected = unexpected
	}
	umu.Unlock()
	lv.Disconnects = disconnects.Load()
	fail := func(f string, a ...any) {
		lv.Failures = append(lv.Failures, fmt.Sprintf("W=%d: ", nw)+fmt.Sprintf(f, a...))
	}
	if lv.InitialFrames < nw {
		fail("%d of %d watchers did not get X's initial state", nw-lv.InitialFrames, nw)
	}
	if sp.Missing > 0 {
		fail("%d spaced changes never reached a watcher", sp.Missing)
	}
	if fl.FinalCorrect < nw {
		fail("%d of %d watchers did not end with X online (1 session)", nw-fl.FinalCorrect, nw)
	}
	if fl.PerWatcherMax > fl.Bound {
		fail("a watcher got %d frames during the fast changes, over the bound %d", fl.PerWatcherMax, fl.Bound)
	}
	if lv.Disconnects > 0 {
		fail("%d watchers disconnected", lv.Disconnects)
	}
	return lv, nil
}

// waitFor polls until ok holds for every watcher's frames, or timeout.
func waitFor(ctx context.Context, ws []*watcher, timeout time.Duration, ok func([]pframe) bool) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		all := true
		for _, w := range ws {
			w.mu.Lock()
			good := ok(w.seen)
			w.mu.Unlock()
			if !good {
				all = false
				break
			}
		}
		if all {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func printPresence(lv *PresenceLevel) {
	sp, fl := lv.Spaced, lv.Flap
	fmt.Printf(`== presence, W = %d watchers (per edge %v; X on %s)
spaced               %d changes %.0f ms apart: %d frames = %.2f per watcher per change (%.0f per change); missing %d, extra %d
  change -> update   p50 %.1f  p90 %.1f  p99 %.1f  max %.1f ms (%d samples)
  edges per change   %.1f frames out, %.1f delivery records; cluster %.2f cores
fast                 %d changes every %.0f ms over %.2fs (%d frames without coalescing)
  frames             %d = per watcher min %d, mean %.2f, max %d (bound %d); max %d within one window
  final state        %d of %d watchers end with X online (%d had it before the last change); last change -> final state p50 %.0f  p99 %.0f  max %.0f ms
  edges              %.0f frames out, %.0f delivery records
unexpected frames    %v; disconnects %d
cpu (whole level)    cluster %.2f cores, other processes and irq %.2f cores
`,
		lv.Watchers, lv.WatcherEdges, lv.XEdge,
		sp.Changes, sp.SpacingMs, sp.Frames, sp.PerWatcher, sp.PerChange, sp.Missing, sp.Extra,
		sp.LatencyMs.P50, sp.LatencyMs.P90, sp.LatencyMs.P99, sp.LatencyMs.Max, sp.LatencyMs.Count,
		sp.EdgeFrames, sp.EdgeRecs, sp.ClusterCPU,
		fl.Changes, fl.IntervalMs, fl.DurationSec, fl.Uncoalesced,
		fl.Frames, fl.PerWatcherMin, fl.PerWatcherAvg, fl.PerWatcherMax, fl.Bound, fl.MaxInWindow,
		fl.FinalCorrect, lv.Watchers, fl.AlreadyFinal, fl.FinalMs.P50, fl.FinalMs.P99, fl.FinalMs.Max,
		fl.EdgeFrames, fl.EdgeRecs,
		lv.Unexpected, lv.Disconnects, lv.ClusterCPUCores, lv.OtherCPUCores)
	if len(lv.Failures) > 0 {
		fmt.Println("problems            ", strings.Join(lv.Failures, "; "))
	}
}
