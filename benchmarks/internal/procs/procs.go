// Package procs starts and stops the server processes the benchmark suite
// measures: `causeway dev`, the roles of a split cluster (`causeway
// broker`, `causeway sequencer`) and the floor server
// (benchmarks/cmd/floor), each in its own process group, and builds the
// binaries they run from.
package procs

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// NoLimits is the environment that turns off the edge's abuse limits
// (per-IP connection count and rate, per-connection and per-user frame and
// byte rates): every benchmark client comes from 127.0.0.1 and a publisher
// may send faster than a person. Keys this binary does not know are
// ignored by `causeway`, so it is safe with older binaries too.
var NoLimits = []string{
	"CAUSEWAY_EDGE_MAX_CONNS_PER_IP=0",
	"CAUSEWAY_EDGE_CONN_RATE_PER_IP=0",
	"CAUSEWAY_EDGE_CONN_FRAMES_PER_SEC=0",
	"CAUSEWAY_EDGE_CONN_BYTES_PER_SEC=0",
	"CAUSEWAY_EDGE_USER_FRAMES_PER_SEC=0",
	"CAUSEWAY_EDGE_USER_BYTES_PER_SEC=0",
}

// NoAnalytics keeps `causeway dev`'s rollup from writing to a ClickHouse
// that happens to run on this machine (the benchmarks measure the
// messaging path; analytics is optional).
var NoAnalytics = []string{"CAUSEWAY_ROLLUP_CLICKHOUSE=false"}

// DevSecret is the token secret the suite gives `causeway dev`.
const DevSecret = "bench-secret-0123456789abcdef0123456789abcdef"

// GoBuild builds package pkg of this module (e.g. "./cmd/causeway") into
// dir/name and returns the path.
func GoBuild(dir, name, pkg string) (string, error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	bin, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return bin, nil
}

// Proc is one server process in its own process group; Lines receives
// its stdout lines until it exits.
type Proc struct {
	Name   string
	Cmd    *exec.Cmd
	ErrLog string
	Lines  chan string
	Done   chan struct{}
}

// PID is the process ID.
func (p *Proc) PID() int { return p.Cmd.Process.Pid }

// Start runs bin with args and extra environment; stderr goes to
// dir/name.err.
func Start(name, dir, bin string, env []string, args ...string) (*Proc, error) {
	errLog := filepath.Join(dir, name+".err")
	ef, err := os.Create(errLog)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = ef
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		ef.Close()
		return nil, err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		ef.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Cmd: cmd, ErrLog: errLog, Lines: make(chan string, 64), Done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case p.Lines <- sc.Text():
			default: // nobody listens any more
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() { _ = cmd.Wait(); ef.Close(); close(p.Done) }()
	return p, nil
}

// WaitLine waits for a stdout line containing substr and returns it.
func (p *Proc) WaitLine(ctx context.Context, substr string, timeout time.Duration) (string, error) {
	deadline := time.After(timeout)
	for {
		select {
		case l := <-p.Lines:
			if strings.Contains(l, substr) {
				return l, nil
			}
		case <-p.Done:
			return "", fmt.Errorf("%s exited: %s", p.Name, Tail(p.ErrLog))
		case <-deadline:
			return "", fmt.Errorf("%s did not print %q within %s", p.Name, substr, timeout)
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// Stop sends SIGINT and SIGKILLs the process group after grace.
func (p *Proc) Stop(grace time.Duration) {
	select {
	case <-p.Done:
		return
	default:
	}
	_ = p.Cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.Done:
	case <-time.After(grace):
		fmt.Fprintf(os.Stderr, "%s did not stop within %s; killing it\n", p.Name, grace)
		p.Kill()
	}
}

// Kill SIGKILLs the process group and waits for the process.
func (p *Proc) Kill() {
	_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
	<-p.Done
}

// Server is a started server under test: its process and WebSocket URLs.
type Server struct {
	*Proc
	URLs   []string
	Secret string
}

// StartDev starts `causeway dev --edges N` on free ports with its data dir
// under dir, and waits until every edge is ready.
func StartDev(ctx context.Context, bin, dir string, edges int, env []string) (*Server, error) {
	env = append(append(append([]string{"CAUSEWAY_AUTH_SECRET=" + DevSecret, "CAUSEWAY_LOG_LEVEL=warn"}, NoLimits...), NoAnalytics...), env...)
	p, err := Start("causeway-dev", dir, bin, env, "dev", "--edges", strconv.Itoa(edges), "--http-addr", "127.0.0.1:0",
		"--broker-listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "dev"))
	if err != nil {
		return nil, err
	}
	s := &Server{Proc: p, Secret: DevSecret}
	for len(s.URLs) < edges {
		l, err := p.WaitLine(ctx, "edge edge-", 60*time.Second)
		if err != nil {
			p.Kill()
			return nil, err
		}
		// "edge edge-1: ws://127.0.0.1:PORT/v1/ws (health: ...)"
		if i := strings.Index(l, "ws://"); i >= 0 {
			u, _, _ := strings.Cut(l[i:], " ")
			s.URLs = append(s.URLs, u)
		}
	}
	for _, u := range s.URLs {
		if err := WaitReady(ctx, u, 60*time.Second); err != nil {
			p.Kill()
			return nil, err
		}
	}
	return s, nil
}

// StartFloor starts the floor server on a free port.
func StartFloor(ctx context.Context, bin, dir string, env []string, args ...string) (*Server, error) {
	p, err := Start("floor", dir, bin, env, append([]string{"-addr", "127.0.0.1:0"}, args...)...)
	if err != nil {
		return nil, err
	}
	l, err := p.WaitLine(ctx, "floor: ws://", 20*time.Second)
	if err != nil {
		p.Kill()
		return nil, err
	}
	s := &Server{Proc: p, URLs: []string{strings.TrimPrefix(l, "floor: ")}, Secret: "floor-ignores-signatures"}
	if err := WaitReady(ctx, s.URLs[0], 20*time.Second); err != nil {
		p.Kill()
		return nil, err
	}
	return s, nil
}

// HTTPBase is http://host:port of a ws:// URL.
func HTTPBase(wsURL string) string {
	u := strings.Replace(strings.Replace(wsURL, "wss://", "https://", 1), "ws://", "http://", 1)
	scheme, rest, _ := strings.Cut(u, "://")
	host, _, _ := strings.Cut(rest, "/")
	return scheme + "://" + host
}

// WaitReady polls GET /readyz of the server behind wsURL until it answers
// 200.
func WaitReady(ctx context.Context, wsURL string, timeout time.Duration) error {
	if err := waitHTTP(ctx, HTTPBase(wsURL)+"/readyz", timeout); err != nil && ctx.Err() == nil {
		return fmt.Errorf("%s never became ready", wsURL)
	} else if err != nil {
		return err
	}
	return nil
}

// FreeAddr returns a free 127.0.0.1 TCP address.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Tail is the end of a log file.
func Tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}
