package web_test

// Browser tests: Debian's chromium, headless, driven over the DevTools
// protocol with chromedp. scripts/setup.sh installs it; a machine without
// it fails these tests, it does not skip them.
//
// TestClientLibrary runs causeway.js's own cases (testdata/client_test.js)
// against a scripted fake edge. TestBrowserChat and TestBrowserCall load
// the demo page from two different edges of an in-process cluster (real
// broker over TCP, sequencer, edges) and use it as two people would.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/causeway/causeway/edge/web"
	"github.com/causeway/causeway/pipeline/devcluster"
	"github.com/chromedp/chromedp"
)

var browserSecret = []byte("browser-test-secret-0123456789abcdef")

// chromiumPath is Debian's chromium, or $CAUSEWAY_CHROMIUM.
func chromiumPath(t *testing.T) string {
	t.Helper()
	p := os.Getenv("CAUSEWAY_CHROMIUM")
	if p == "" {
		p = "/usr/bin/chromium"
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no Chromium at %s (scripts/setup.sh installs Debian's chromium; or set CAUSEWAY_CHROMIUM): %v", p, err)
	}
	return p
}

// newBrowser starts one headless Chromium for the test and returns its
// context; tabs are children of it. It is stopped when the test ends.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.UserDataDir(t.TempDir()),
		// Root in a container: Chromium's sandbox needs user namespaces
		// we do not have.
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		// A camera and a microphone that play a test pattern and a
		// tone, granted without a prompt.
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		// ICE on this machine only: host candidates with real addresses
		// (no mDNS names, which would need multicast to resolve), and
		// loopback allowed for a machine whose only interface is lo.
		chromedp.Flag("disable-features", "Translate,BlinkGenPropertyTrees,WebRtcHideLocalIpsWithMdns"),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		// No calls home: this machine has no internet, and each refused
		// connection would be noise.
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-pings", true),
		chromedp.WindowSize(1000, 760),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	start := time.Now()
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		cancel()
		cancelAlloc()
		t.Fatalf("start Chromium: %v", err)
	}
	t.Logf("Chromium started in %v", time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	return ctx
}

// page is one browser tab. Its console is kept and printed if the test
// fails.
type page struct {
	t    *testing.T
	name string
	ctx  context.Context

	mu      sync.Mutex
	console []string
}

func newPage(t *testing.T, browser context.Context, name string) *page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser) // a new tab
	p := &page{t: t, name: name, ctx: ctx}
	msgs := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range msgs {
			if err != nil {
				return
			}
			p.mu.Lock()
			p.console = append(p.console, fmt.Sprintf("%s %s", m.Type, m))
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		if t.Failed() {
			p.mu.Lock()
			t.Logf("console of %s:\n  %s", name, strings.Join(p.console, "\n  "))
			p.mu.Unlock()
		}
		cancel()
		<-done
	})
	return p
}

// do runs actions with a timeout.
func (p *page) do(timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(p.ctx, timeout)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

func (p *page) must(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := p.do(15*time.Second, actions...); err != nil {
		p.t.Fatalf("%s: %s: %v", p.name, what, err)
	}
}

// eval evaluates a JavaScript expression (awaiting a promise) into v.
func (p *page) eval(expr string, v any) error {
	ctx, cancel := context.WithTimeout(p.ctx, 15*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		return err
	}
	if v == nil {
		return nil
	}
	return json.Unmarshal(raw, v)
}

func (p *page) mustEval(expr string, v any) {
	p.t.Helper()
	if err := p.eval(expr, v); err != nil {
		p.t.Fatalf("%s: evaluate %s: %v", p.name, expr, err)
	}
}

// waitFor polls a JavaScript predicate until it is truthy; on timeout it
// returns an error with what diag evaluates to, to say what came instead.
func (p *page) waitFor(what, pred string, timeout time.Duration, diag string) error {
	ctx, cancel := context.WithTimeout(p.ctx, timeout)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](pred,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err == nil {
		return nil
	}
	var got any
	if diag != "" {
		if derr := p.eval(diag, &got); derr != nil {
			got = "(" + derr.Error() + ")"
		}
	}
	b, _ := json.Marshal(got)
	return fmt.Errorf("%s: %s within %v: %v; state: %s", p.name, what, timeout, err, b)
}

// screenshot saves the page under test-output/browser/ at the repo root.
func (p *page) screenshot(file string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 15*time.Second)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100 gives a PNG; less, a JPEG
	if err != nil {
		p.t.Errorf("%s: screenshot: %v", p.name, err)
		return
	}
	dir := filepath.Join(repoRoot(p.t), "test-output", "browser")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		p.t.Fatalf("create %s: %v", dir, err)
	}
	path := filepath.Join(dir, file)
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		p.t.Errorf("save screenshot: %v", err)
		return
	}
	p.t.Logf("screenshot of %s: %s", p.name, path)
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			t.Fatalf("no go.mod above %s", dir)
		}
	}
}

// TestClientLibrary runs causeway.js's protocol cases in Chromium.
func TestClientLibrary(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("GET /testdata/", http.StripPrefix("/testdata/", http.FileServer(http.Dir("testdata"))))
	mux.Handle("GET /", web.Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	p := newPage(t, newBrowser(t), "library")
	p.must("open a page", chromedp.Navigate(srv.URL+"/style.css"))
	var results []struct {
		Name  string `json:"name"`
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	ctx, cancel := context.WithTimeout(p.ctx, 2*time.Minute)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](`import('/testdata/client_test.js').then(m => m.run())`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("run testdata/client_test.js: %v", err)
	}
	if err := json.Unmarshal(raw, &results); err != nil {
		t.Fatalf("decode results %s: %v", raw, err)
	}
	if len(results) < 10 {
		t.Fatalf("only %d cases ran: %s", len(results), raw)
	}
	for _, r := range results {
		if r.OK {
			t.Logf("ok   %s", r.Name)
		} else {
			t.Errorf("FAIL %s:\n%s", r.Name, r.Error)
		}
	}
}

// startDemoCluster is a two-edge cluster whose edges mint dev tokens, as
// `causeway dev` does.
func startDemoCluster(t *testing.T) *devcluster.Cluster {
	return devcluster.StartTest(t, 2, browserSecret, func(c *devcluster.Config) {
		c.Edge.DevTokens = true
		c.Edge.DevTokenGroups = []string{"room-*"}
		c.Edge.DevTokenTTL = time.Hour
	})
}

// signIn opens the demo on url and signs in through the form, as a person
// would; it returns once the page has joined and replayed the group.
func signIn(t *testing.T, p *page, url, user, group string) {
	t.Helper()
	p.must("open the demo", chromedp.Navigate(url+"?group="+group),
		chromedp.WaitVisible(chromedp.ID("signin-btn")),
		chromedp.SendKeys(chromedp.ID("user"), user),
		chromedp.Click(chromedp.ID("signin-btn")))
	if err := p.waitFor("sign in", `window.demo && window.demo.ready`, 20*time.Second,
		`({status: document.getElementById('status').textContent, error: document.getElementById('signin-error').textContent})`); err != nil {
		t.Fatal(err)
	}
}

// say types a line into the compose box and sends it with the button.
func say(p *page, text string) error {
	return p.do(10*time.Second,
		chromedp.SendKeys(chromedp.ID("text"), text),
		chromedp.Click(chromedp.ID("send")))
}

type shownMsg struct {
	Seq  int    `json:"seq"`
	From string `json:"from"`
	Text string `json:"text"`
}

// shown is the confirmed messages as the page shows them: the list items
// in DOM order, with the seq each carries.
const shownJS = `[...document.querySelectorAll('#messages li[data-seq]')].map(li => ({
	seq: +li.dataset.seq, from: li.querySelector('.from').textContent, text: li.querySelector('.text').textContent}))`

func shown(t *testing.T, p *page) []shownMsg {
	t.Helper()
	var m []shownMsg
	p.mustEval(shownJS, &m)
	return m
}

// waitShown waits until every text in want is shown as confirmed on p.
func waitShown(t *testing.T, p *page, want []string, timeout time.Duration) {
	t.Helper()
	b, _ := json.Marshal(want)
	pred := fmt.Sprintf(`(() => { const have = new Set([...document.querySelectorAll('#messages li[data-seq] .text')].map(e => e.textContent));
		return %s.every(w => have.has(w)); })()`, b)
	if err := p.waitFor(fmt.Sprintf("show %d messages", len(want)), pred, timeout, shownJS); err != nil {
		t.Fatal(err)
	}
}

// checkTimeline checks what a page shows: dense increasing seqs with no
// duplicate, and each sender's lines in the order they were said.
func checkTimeline(t *testing.T, name string, got []shownMsg, said map[string][]string) {
	t.Helper()
	for i := 1; i < len(got); i++ {
		if got[i].Seq <= got[i-1].Seq {
			t.Errorf("%s: seq %d shown after seq %d: %+v", name, got[i].Seq, got[i-1].Seq, got)
		}
	}
	texts := map[string]int{}
	bySender := map[string][]string{}
	for _, m := range got {
		texts[m.Text]++
		bySender[m.From] = append(bySender[m.From], m.Text)
	}
	for txt, n := range texts {
		if n > 1 {
			t.Errorf("%s: %q shown %d times", name, txt, n)
		}
	}
	for who, lines := range said {
		if fmt.Sprint(bySender[who]) != fmt.Sprint(lines) {
			t.Errorf("%s: %s's messages shown as %q, want in the order said %q", name, who, bySender[who], lines)
		}
	}
}

func TestBrowserChat(t *testing.T) {
	cl := startDemoCluster(t)
	browser := newBrowser(t)
	alice := newPage(t, browser, "alice")
	bob := newPage(t, browser, "bob")
	signIn(t, alice, cl.PageURL(0), "alice", "room-1")
	signIn(t, bob, cl.PageURL(1), "bob", "room-1")

	// Two different edges: the pages meet only through Kafka.
	var edgeA, edgeB string
	alice.mustEval(`demo.client.edge`, &edgeA)
	bob.mustEval(`demo.client.edge`, &edgeB)
	if edgeA != "edge-1" || edgeB != "edge-2" {
		t.Fatalf("pages on edges %q and %q, want edge-1 and edge-2", edgeA, edgeB)
	}

	// Interleaved, without waiting for one another.
	said := map[string][]string{}
	var all []string
	for i := 1; i <= 3; i++ {
		for _, w := range []struct {
			p    *page
			user string
		}{{alice, "alice"}, {bob, "bob"}} {
			line := fmt.Sprintf("%s says %d", w.user, i)
			if err := say(w.p, line); err != nil {
				t.Fatalf("%s: send %q: %v", w.user, line, err)
			}
			said[w.user] = append(said[w.user], line)
			all = append(all, line)
		}
	}
	waitShown(t, alice, all, 15*time.Second)
	waitShown(t, bob, all, 15*time.Second)
	a, b := shown(t, alice), shown(t, bob)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("the pages disagree on the order:\nalice: %+v\nbob:   %+v", a, b)
	}
	checkTimeline(t, "alice", a, said)
	// Each page also sees the other join, in the same timeline.
	for _, p := range []*page{alice, bob} {
		var members []string
		p.mustEval(`[...document.querySelectorAll('#members li')].map(li => li.dataset.user).sort()`, &members)
		if fmt.Sprint(members) != "[alice bob]" {
			t.Errorf("%s: member list %v, want [alice bob]", p.name, members)
		}
	}

	t.Run("resume after suspend", func(t *testing.T) {
		// Alice goes away; Bob talks; Alice says something while away
		// (queued); on resume she catches up from her last seq and her
		// line is sent once.
		alice.mustEval(`demo.client.suspend(), demo.client.state`, nil)
		var away []string
		for i := 1; i <= 3; i++ {
			line := fmt.Sprintf("bob while alice is away %d", i)
			if err := say(bob, line); err != nil {
				t.Fatal(err)
			}
			away = append(away, line)
			said["bob"] = append(said["bob"], line)
		}
		waitShown(t, bob, away, 10*time.Second)
		if err := say(alice, "alice from the train"); err != nil {
			t.Fatal(err)
		}
		said["alice"] = append(said["alice"], "alice from the train")
		var n int
		alice.mustEval(`document.querySelectorAll('#messages li[data-seq]').length`, &n)
		if n != len(all) {
			t.Fatalf("alice shows %d confirmed messages while suspended, want still %d", n, len(all))
		}
		alice.mustEval(`demo.client.resume(), 0`, nil)
		all = append(all, away...)
		all = append(all, "alice from the train")
		waitShown(t, alice, all, 15*time.Second)
		waitShown(t, bob, all, 15*time.Second)
		a, b := shown(t, alice), shown(t, bob)
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("after resume the pages disagree:\nalice: %+v\nbob:   %+v", a, b)
		}
		checkTimeline(t, "alice", a, said)
		var pending int
		alice.mustEval(`document.querySelectorAll('#messages li.pending').length`, &pending)
		if pending != 0 {
			t.Errorf("alice still shows %d pending messages", pending)
		}
	})

	t.Run("reconnect under traffic", func(t *testing.T) {
		// Bob sends a burst while Alice's connection is dropped and
		// remade in the middle of it: she must show every message once,
		// in order (resubscribe with since, duplicates dropped).
		var burst []string
		for i := 1; i <= 20; i++ {
			burst = append(burst, fmt.Sprintf("burst %02d", i))
		}
		b, _ := json.Marshal(burst)
		// One every 15 ms, so the burst spans Alice's reconnect.
		bob.mustEval(fmt.Sprintf(`(() => { %s.forEach((text, i) => setTimeout(() => demo.client.send(demo.group, {text}), 15*i)); return 0; })()`, b), nil)
		if err := bob.waitFor("send the first of the burst", `demo.messages.some(m => m.text === 'burst 03')`, 10*time.Second, ""); err != nil {
			t.Fatal(err)
		}
		alice.mustEval(`demo.client.reconnect(), 0`, nil)
		said["bob"] = append(said["bob"], burst...)
		all = append(all, burst...)
		waitShown(t, alice, all, 20*time.Second)
		waitShown(t, bob, all, 20*time.Second)
		a, bb := shown(t, alice), shown(t, bob)
		if fmt.Sprint(a) != fmt.Sprint(bb) {
			t.Fatalf("after the reconnect the pages disagree:\nalice: %+v\nbob:   %+v", a, bb)
		}
		checkTimeline(t, "alice", a, said)
		var stats map[string]int
		alice.mustEval(`demo.client.stats`, &stats)
		if stats["reconnects"] < 2 {
			t.Errorf("alice's client counts %d reconnects, want at least 2 (resume and reconnect): %v", stats["reconnects"], stats)
		}
		t.Logf("alice's client stats: %v", stats)
	})

	t.Run("liveness probe", func(t *testing.T) {
		// The client's probe of a quiet connection is a second hello,
		// which a real edge must answer (error bad_request) without
		// closing the connection: probes go out, no reconnect follows.
		var got struct {
			Probes, Reconnects int
			State              string
		}
		alice.mustEval(fmt.Sprintf(`(async () => {
			const { CausewayClient } = await import('/causeway.js');
			const token = (await (await fetch('/dev/token?user=prober')).json()).token;
			const c = new CausewayClient({ urls: [%q], token, idleProbeMs: 300, probeTimeoutMs: 1000 });
			await c.connect();
			await new Promise(r => setTimeout(r, 2500));
			const out = { probes: c.stats.probes, reconnects: c.stats.reconnects, state: c.state };
			c.close();
			return out;
		})()`, cl.URL(0)), &got)
		if got.Probes < 2 || got.Reconnects != 0 || got.State != "open" {
			t.Errorf("after 2.5 s idle with probes every 0.3 s: %+v; want at least 2 probes, 0 reconnects, state open", got)
		}
	})

	alice.screenshot("chat-alice.png")
	bob.screenshot("chat-bob.png")
}

func TestBrowserCall(t *testing.T) {
	cl := startDemoCluster(t)
	browser := newBrowser(t)
	alice := newPage(t, browser, "alice")
	bob := newPage(t, browser, "bob")
	signIn(t, alice, cl.PageURL(0), "alice", "room-1")
	signIn(t, bob, cl.PageURL(1), "bob", "room-1")
	defer func() {
		alice.screenshot("call-alice.png")
		bob.screenshot("call-bob.png")
	}()

	t.Run("presence", func(t *testing.T) {
		// Each sees the other's dot turn green.
		for _, w := range []struct {
			p     *page
			other string
		}{{alice, "bob"}, {bob, "alice"}} {
			sel := fmt.Sprintf(`#members li[data-user=%q]`, w.other)
			pred := fmt.Sprintf(`document.querySelector('%s')?.dataset.presence === 'online'`, sel)
			if err := w.p.waitFor(w.other+" shown online", pred, 10*time.Second,
				`({presence: [...demo.presence], errors: demo.errors})`); err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("typing", func(t *testing.T) {
		if err := alice.do(10*time.Second, chromedp.SendKeys(chromedp.ID("text"), "hel")); err != nil {
			t.Fatal(err)
		}
		if err := bob.waitFor("show alice typing", `document.getElementById('typing').textContent.includes('alice')`,
			10*time.Second, `({typing: demo.typing, errors: demo.errors})`); err != nil {
			t.Error(err)
		}
	})

	t.Run("call", func(t *testing.T) {
		// Alice calls Bob from the member list; Bob accepts; both peer
		// connections must connect and play the other's video within
		// 20 s.
		alice.must("click Call", chromedp.Click(chromedp.CSS(`#members li[data-user="bob"] .call-btn`)))
		start := time.Now()
		// A refused offer ends Alice's call at once: say why rather than
		// wait for a ring that cannot come.
		_ = alice.waitFor("send the offer", `demo.lastCall || (demo.call && demo.call.offerSent)`, 5*time.Second, "")
		var ended struct {
			LastCall map[string]string `json:"lastCall"`
			Errors   []any             `json:"errors"`
		}
		alice.mustEval(`({lastCall: demo.lastCall || null, errors: demo.errors})`, &ended)
		if ended.LastCall != nil {
			t.Fatalf("alice's call ended before ringing: %q; errors: %v", ended.LastCall["ended"], ended.Errors)
		}
		if err := bob.waitFor("ring", `!document.getElementById('incoming').hidden`, 20*time.Second,
			`({errors: demo.errors, call: demo.call && demo.call.status})`); err != nil {
			t.Fatal(err)
		}
		bob.must("accept", chromedp.Click(chromedp.ID("accept")))
		const media = `demo.call && demo.call.connectionState === 'connected' && demo.call.remoteFrames > 0 &&
			document.getElementById('remote').videoWidth > 0`
		const diag = `({status: demo.call ? demo.call.status : null, state: demo.call ? demo.call.connectionState : null,
			frames: demo.call ? demo.call.remoteFrames : 0, width: document.getElementById('remote').videoWidth,
			lastCall: demo.lastCall, errors: demo.errors})`
		left := 20*time.Second - time.Since(start)
		for _, p := range []*page{alice, bob} {
			if err := p.waitFor("connect and play remote video", media, max(left, time.Second), diag); err != nil {
				t.Fatal(err)
			}
			left = 20*time.Second - time.Since(start)
		}
		t.Logf("call connected with remote video on both pages %v after the click", time.Since(start).Round(time.Millisecond))
		var w [2]int
		alice.mustEval(`[document.getElementById('remote').videoWidth, demo.call.remoteFrames]`, &w)
		t.Logf("alice sees bob's video at width %d after %d frames", w[0], w[1])
		alice.screenshot("call-alice.png")
		bob.screenshot("call-bob.png")

		// Hanging up reaches the other side.
		alice.must("hang up", chromedp.Click(chromedp.ID("hangup")))
		if err := bob.waitFor("see the call end", `demo.call === null && demo.lastCall && /hung up/.test(demo.lastCall.ended)`,
			10*time.Second, `demo.lastCall`); err != nil {
			t.Error(err)
		}
	})
}
