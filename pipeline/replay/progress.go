package replay

import (
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"
)

// Progress hears how far a replay is, in records of the topic it reads.
// Its methods are called from the replay's goroutine.
type Progress interface {
	// Start begins counting towards total records (0: unknown).
	Start(label string, total int64)
	// Label says what is being read now (a partition).
	Label(label string)
	// Add counts n more records read.
	Add(n int64)
	// Stop ends the count.
	Stop()
}

// Meter is a Progress that prints records/s and an ETA: on a terminal one
// line rewritten in place every quarter second, elsewhere a line every
// few seconds. It is safe for concurrent use.
type Meter struct {
	w     io.Writer
	tty   bool
	every time.Duration

	mu           sync.Mutex
	label        string
	total, done  int64
	started      time.Time
	stop, exited chan struct{}
}

// NewMeter returns a Meter writing to w (stderr); tty says w is a
// terminal.
func NewMeter(w io.Writer, tty bool) *Meter {
	every := 3 * time.Second
	if tty {
		every = 250 * time.Millisecond
	}
	return &Meter{w: w, tty: tty, every: every}
}

func (m *Meter) Start(label string, total int64) {
	m.Stop()
	m.mu.Lock()
	m.label, m.total, m.done, m.started = label, total, 0, time.Now()
	m.stop, m.exited = make(chan struct{}), make(chan struct{})
	stop, exited := m.stop, m.exited
	m.mu.Unlock()
	go func() {
		defer close(exited)
		t := time.NewTicker(m.every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				m.print(false)
			}
		}
	}()
}

func (m *Meter) Label(label string) {
	m.mu.Lock()
	m.label = label
	m.mu.Unlock()
}

func (m *Meter) Add(n int64) {
	m.mu.Lock()
	m.done += n
	m.mu.Unlock()
}

// Stop prints the final line.
func (m *Meter) Stop() {
	m.mu.Lock()
	stop, exited := m.stop, m.exited
	m.stop = nil
	m.mu.Unlock()
	if stop == nil {
		return
	}
	close(stop)
	<-exited
	m.print(true)
}

func (m *Meter) print(final bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	line := progressLine(m.label, m.done, m.total, time.Since(m.started))
	switch {
	case m.tty && final:
		fmt.Fprintf(m.w, "\r\033[K%s\n", line)
	case m.tty:
		fmt.Fprintf(m.w, "\r\033[K%s", line)
	default:
		fmt.Fprintln(m.w, line)
	}
}

// Above returns a writer to w whose writes first clear the meter's line
// on a terminal, so that a report printed to the same terminal does not
// run into it (the next tick draws it again below).
func (m *Meter) Above(w io.Writer) io.Writer { return meterWriter{m, w} }

type meterWriter struct {
	m *Meter
	w io.Writer
}

func (mw meterWriter) Write(p []byte) (int, error) {
	mw.m.mu.Lock()
	defer mw.m.mu.Unlock()
	if mw.m.tty && mw.m.stop != nil {
		fmt.Fprint(mw.m.w, "\r\033[K")
	}
	return mw.w.Write(p)
}

// progressLine renders one progress report.
func progressLine(label string, done, total int64, elapsed time.Duration) string {
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(done) / s
	}
	if total <= 0 {
		return fmt.Sprintf("%s: %s records, %s records/s", label, group(done), group(int64(rate)))
	}
	done = min(done, total)
	eta := "?"
	switch {
	case done >= total:
		eta = "0s"
	case rate > 0:
		eta = time.Duration(float64(total-done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	return fmt.Sprintf("%s: %s of %s records (%.1f%%), %s records/s, ETA %s",
		label, group(done), group(total), 100*float64(done)/float64(total), group(int64(rate)), eta)
}

// group writes n with thousands separators.
func group(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	out := make([]byte, 0, len(s)+len(s)/3)
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// nopProgress is the Progress of a replay without one.
type nopProgress struct{}

func (nopProgress) Start(string, int64) {}
func (nopProgress) Label(string)        {}
func (nopProgress) Add(int64)           {}
func (nopProgress) Stop()               {}
