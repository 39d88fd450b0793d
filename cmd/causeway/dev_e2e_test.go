package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var devEdgeLine = regexp.MustCompile(`^edge (edge-\d+): (ws://[0-9.]+:\d+/v1/ws)`)

// `causeway dev` prints where each edge listens, serves two terminal
// clients on two edges, and stops cleanly on SIGINT.
func TestDevAndTerminalClients(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	dir := t.TempDir()
	bin := binary(t)
	env := []string{"CAUSEWAY_AUTH_SECRET=" + e2eSecret, "CAUSEWAY_ROLLUP_CLICKHOUSE=false"}
	admin := freePort(t)
	dev := exec.Command(bin, "dev", "--edges", "2", "--http-addr", "127.0.0.1:0", "--broker-listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "dev"), "--admin-addr", admin)
	dev.Env = append(dev.Environ(), append([]string{"CAUSEWAY_ADMIN_PPROF=true"}, env...)...)
	out, err := dev.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	dev.Stderr = &stderr
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = dev.Process.Kill() }()
	var urls []string
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	timeout := time.After(60 * time.Second)
	for len(urls) < 2 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("dev exited early: %s", stderr.String())
			}
			if m := devEdgeLine.FindStringSubmatch(l); m != nil {
				urls = append(urls, m[2])
			}
		case <-timeout:
			t.Fatal("dev did not print its edges")
		}
	}

	mint := func(user string) string {
		c := exec.Command(bin, "token", "--user", user, "--groups", "room-*")
		c.Env = append(c.Environ(), env...)
		tok, err := c.Output()
		if err != nil {
			t.Fatalf("token: %v", err)
		}
		return strings.TrimSpace(string(tok))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Bob listens on edge 2; Alice on edge 1 types one line.
	bob := exec.CommandContext(ctx, bin, "client", "--url", urls[1], "--token", mint("bob"), "--group", "room-walk")
	bobIn, _ := bob.StdinPipe()
	var bobOut syncBuffer
	bob.Stdout = &bobOut
	if err := bob.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &bobOut, `"type":"subscribed"`)
	alice := exec.CommandContext(ctx, bin, "client", "--url", urls[0], "--token", mint("alice"), "--group", "room-walk")
	alice.Stdin = strings.NewReader("{\"text\":\"hello bob\"}\n")
	aliceOut, err := alice.CombinedOutput()
	if err != nil {
		t.Fatalf("alice: %v\n%s", err, aliceOut)
	}
	if !strings.Contains(string(aliceOut), "# sent as seq 3") {
		t.Fatalf("alice's client did not report the send:\n%s", aliceOut)
	}
	waitFor(t, &bobOut, `"from":"alice","client_msg_id":`)
	if !strings.Contains(bobOut.String(), `"body":{"text":"hello bob"}`) || !strings.Contains(bobOut.String(), `"user":"alice","event":"joined"`) {
		t.Fatalf("bob saw:\n%s", bobOut.String())
	}
	_ = bobIn.Close()
	_ = bob.Wait()

	// --admin-addr: the sequencer's and the rollup's metrics, labelled by
	// role, and the whole process's pprof.
	metrics := httpGet(t, "http://"+admin+"/metrics")
	for _, want := range []string{`causeway_sequencer_records_total{role="sequencer"}`, `causeway_rollup_`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("dev's /metrics has no %s:\n%.2000s", want, metrics)
		}
	}
	if !strings.Contains(httpGet(t, "http://"+admin+"/debug/pprof/"), "goroutine") {
		t.Error("dev's /debug/pprof/ does not list profiles")
	}

	if err := dev.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- dev.Wait() }()
	stopped := false
	for l := range lines {
		if l == "causeway dev: stopped" {
			stopped = true
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("dev exited with %v after SIGINT: %s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("dev did not stop within 30s of SIGINT")
	}
	if !stopped {
		t.Fatal("dev did not report a clean stop")
	}
}

// syncBuffer is a bytes.Buffer a child process writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls a buffer written by a child process until it contains s.
func waitFor(t *testing.T, b *syncBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(b.String(), s) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no %q in:\n%s", s, b.String())
}

// httpGet returns the body of a 200 answer to GET url.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
	return string(body)
}
