package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/causeway/causeway/edge"
	"github.com/causeway/causeway/edge/client"
)

const e2eSecret = "e2e-secret-0123456789abcdef0123456789"

// buildBinary compiles causeway once per test binary run.
var buildOnce struct {
	sync.Once
	path string
	err  error
}

func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "causeway-e2e-bin")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.path = filepath.Join(dir, "causeway")
		out, err := exec.Command("go", "build", "-race", "-o", buildOnce.path, ".").CombinedOutput()
		if err != nil {
			buildOnce.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildOnce.err != nil {
		t.Fatal(buildOnce.err)
	}
	return buildOnce.path
}

// proc is a causeway process started by a test.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	addr chan string
	done chan struct{}
}

var listenLine = regexp.MustCompile(`(?:listening on|broker listening on) (?:ws://)?([0-9.]+:[0-9]+)`)

func start(t *testing.T, dir, name string, env []string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, addr: make(chan string, 1), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := listenLine.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case p.addr <- m[1]:
				default:
				}
			}
		}
	}()
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			lines := strings.Split(string(b), "\n")
			if len(lines) > 40 {
				lines = lines[len(lines)-40:]
			}
			t.Logf("--- last log lines of %s:\n%s", name, strings.Join(lines, "\n"))
		}
	})
	return p
}

func (p *proc) kill() {
	if p.cmd.Process != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	<-p.done
}

func (p *proc) waitAddr(t *testing.T) string {
	t.Helper()
	select {
	case a := <-p.addr:
		return a
	case <-p.done:
		t.Fatalf("%s exited before listening (see %s)", p.name, p.log)
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not report its address", p.name)
	}
	return ""
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitReady(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("edge %s never became ready", addr)
}

// Separate broker, two sequencers and two edges; one sequencer is
// SIGKILLed mid-stream. Every client still receives every message exactly
// once, in one dense order per group.
func TestMultiProcessSequencerKill(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	dir := t.TempDir()
	env := []string{
		"CAUSEWAY_AUTH_SECRET=" + e2eSecret,
		"CAUSEWAY_TOPICS_GROUP_PARTITIONS=4",
		"CAUSEWAY_TOPICS_DELIVERY_PARTITIONS=4",
		"CAUSEWAY_SEQUENCER_SESSION_TIMEOUT=2s",
		"CAUSEWAY_SEQUENCER_TRANSACTION_TIMEOUT=5s",
		"CAUSEWAY_SEQUENCER_MAX_BATCH=20",
		"CAUSEWAY_LOG_LEVEL=info",
	}
	broker := start(t, dir, "broker", env, "broker", "--listen", freePort(t), "--data-dir", filepath.Join(dir, "data"))
	baddr := broker.waitAddr(t)
	seqA := start(t, dir, "seq-a", env, "sequencer", "--brokers", baddr, "--id", "seq-a")
	start(t, dir, "seq-b", env, "sequencer", "--brokers", baddr, "--id", "seq-b")
	var urls []string
	for _, id := range []string{"edge-a", "edge-b"} {
		p := start(t, dir, id, env, "edge", "--brokers", baddr, "--id", id, "--http-addr", "127.0.0.1:0")
		addr := p.waitAddr(t)
		waitReady(t, addr)
		urls = append(urls, "ws://"+addr+"/v1/ws")
	}

	groups := []string{"room-1", "room-2", "room-3"}
	const perClient = 150
	type member struct {
		c     *client.Client
		group string
		user  string
	}
	var members []member
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for i := 0; i < 6; i++ {
		user := fmt.Sprintf("user%d", i)
		tok, err := edge.Mint([]byte(e2eSecret), user, []string{"room-*"}, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.Dial(ctx, urls[i%2], tok, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		g := groups[i%3]
		if err := c.Join(ctx, g); err != nil {
			t.Fatalf("%s join: %v", user, err)
		}
		if _, err := c.Subscribe(ctx, g, nil); err != nil {
			t.Fatalf("%s subscribe: %v", user, err)
		}
		members = append(members, member{c, g, user})
	}
	// Each group has two members; wait until the first member of each
	// group has seen the second join, so both are attached.
	firstSeq := map[string]uint64{}
	for _, m := range members[:3] {
		for f := range m.c.Events() {
			if f.Type == "member" && f.User != m.user {
				firstSeq[m.group] = f.Seq + 1
				break
			}
		}
	}

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	received := make([][]client.Frame, len(members))
	for i, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < perClient; k++ {
				sctx, scancel := context.WithTimeout(ctx, 60*time.Second)
				_, err := m.c.Send(sctx, m.group, fmt.Sprintf("%s-%d", m.user, k), k)
				scancel()
				if err != nil {
					errs <- fmt.Errorf("%s send %d: %w", m.user, k, err)
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := 2 * perClient
			for len(received[i]) < want {
				select {
				case f, ok := <-m.c.Events():
					if !ok {
						errs <- fmt.Errorf("%s: connection ended: %v", m.user, m.c.Err())
						return
					}
					if f.Type == "msg" {
						received[i] = append(received[i], f)
					}
				case <-ctx.Done():
					errs <- fmt.Errorf("%s: received %d of %d", m.user, len(received[i]), want)
					return
				}
			}
		}()
	}
	// Kill a sequencer once traffic flows.
	time.Sleep(700 * time.Millisecond)
	seqA.kill()
	t.Log("seq-a killed with SIGKILL")
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	// Linger briefly: a duplicate would arrive now.
	time.Sleep(500 * time.Millisecond)
	for i, m := range members {
		for {
			select {
			case f := <-m.c.Events():
				if f.Type == "msg" {
					t.Fatalf("%s received an extra message %s seq %d", m.user, f.ClientMsgID, f.Seq)
				}
				continue
			default:
			}
			break
		}
		seen := map[string]bool{}
		for k, f := range received[i] {
			if want := firstSeq[m.group] + uint64(k); f.Seq != want {
				t.Fatalf("%s: message %d has seq %d, want %d", m.user, k, f.Seq, want)
			}
			if seen[f.ClientMsgID] {
				t.Fatalf("%s: %s delivered twice", m.user, f.ClientMsgID)
			}
			seen[f.ClientMsgID] = true
		}
		// The group peer saw the identical order.
		peer := received[(i+3)%6]
		for k := range received[i] {
			if received[i][k].ClientMsgID != peer[k].ClientMsgID {
				t.Fatalf("%s and its peer disagree at position %d", m.user, k)
			}
		}
	}
	t.Logf("%d clients received %d messages each exactly once in order across a sequencer SIGKILL", len(members), 2*perClient)
}
