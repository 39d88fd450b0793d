package web_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/causeway/causeway/edge"
)

var unitSecret = []byte("web-unit-test-secret-0123456789abcdef")

// edgeHandler is a real edge's HTTP handler (edge.Server.Handler), so these
// tests check the wiring in edge/server.go as well as this package. An
// edge that never runs needs no broker: New only creates its Kafka clients.
func edgeHandler(t *testing.T, tweak func(*edge.Config)) http.Handler {
	t.Helper()
	cfg := edge.DefaultConfig()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Kafka.Brokers = []string{"127.0.0.1:1"}
	cfg.Kafka.ClientID = "web-test"
	cfg.Secret = unitSecret
	if tweak != nil {
		tweak(&cfg)
	}
	s, err := edge.New(cfg)
	if err != nil {
		t.Fatalf("edge.New: %v", err)
	}
	// Run with a done context releases the listener and the Kafka
	// clients at once: it gives up waiting for topics.
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = s.Run(ctx)
	})
	return s.Handler()
}

func get(t *testing.T, h http.Handler, path string, hdr map[string]string) *http.Response {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestStaticFilesContentTypes(t *testing.T) {
	t.Parallel()
	h := edgeHandler(t, nil)
	cases := []struct {
		path, ctype, contains string
	}{
		{"/", "text/html; charset=utf-8", `<script type="module" src="/app.js">`},
		{"/index.html", "text/html; charset=utf-8", "<title>Causeway demo</title>"},
		{"/causeway.js", "text/javascript; charset=utf-8", "export class CausewayClient"},
		{"/app.js", "text/javascript; charset=utf-8", "from '/causeway.js'"},
		{"/style.css", "text/css; charset=utf-8", ".dot.online"},
		{"/causeway.d.ts", "application/typescript; charset=utf-8", "export class CausewayClient extends EventTarget"},
	}
	for _, c := range cases {
		resp := get(t, h, c.path, nil)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: status %d, want 200", c.path, resp.StatusCode)
			continue
		}
		if got := resp.Header.Get("Content-Type"); got != c.ctype {
			t.Errorf("GET %s: Content-Type %q, want %q", c.path, got, c.ctype)
		}
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options %q, want nosniff", c.path, got)
		}
		if !strings.Contains(string(body), c.contains) {
			t.Errorf("GET %s: body lacks %q", c.path, c.contains)
		}
		if strings.HasSuffix(c.ctype, "html; charset=utf-8") {
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
				t.Errorf("GET %s: Content-Security-Policy %q lacks script-src 'self'", c.path, csp)
			}
		}
		// The ETag makes a reload cost a 304.
		etag := resp.Header.Get("ETag")
		if etag == "" {
			t.Errorf("GET %s: no ETag", c.path)
			continue
		}
		if again := get(t, h, c.path, map[string]string{"If-None-Match": etag}); again.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with If-None-Match: status %d, want 304", c.path, again.StatusCode)
		}
	}
	for _, p := range []string{"/nope.js", "/web.go", "/dev/", "/../web.go"} {
		if resp := get(t, h, p, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", p, resp.StatusCode)
		}
	}
	// The edge's own endpoints still win over the static handler.
	if resp := get(t, h, "/healthz", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz: status %d, want 200", resp.StatusCode)
	}
}

func TestDevTokenDisabledIs404(t *testing.T) {
	t.Parallel()
	h := edgeHandler(t, nil) // the default: off
	resp := get(t, h, "/dev/token?user=alice", nil)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /dev/token with dev tokens off: status %d, want 404 (body %q)", resp.StatusCode, body)
	}
	if strings.Contains(string(body), "ey") {
		t.Fatalf("GET /dev/token with dev tokens off returned something token-like: %q", body)
	}
}

func TestDevTokenEnabled(t *testing.T) {
	t.Parallel()
	h := edgeHandler(t, func(c *edge.Config) {
		c.DevTokens = true
		c.DevTokenGroups = []string{"room-*"}
		c.DevTokenTTL = time.Hour
	})
	resp := get(t, h, "/dev/token?user=alice", nil)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /dev/token: status %d, want 200 (body %q)", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	var tok struct {
		Token     string   `json:"token"`
		User      string   `json:"user"`
		Groups    []string `json:"groups"`
		ExpiresMs int64    `json:"expires_ms"`
	}
	if err := json.Unmarshal(body, &tok); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	v, err := edge.NewVerifier(unitSecret)
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.Verify(tok.Token)
	if err != nil {
		t.Fatalf("the minted token does not verify with the edge's secret: %v", err)
	}
	if id.User != "alice" || tok.User != "alice" {
		t.Errorf("token user %q (answer says %q), want alice", id.User, tok.User)
	}
	if !id.MayJoin("room-1") || id.MayJoin("other") {
		t.Errorf("token groups %v: want exactly the configured room-*", id.Groups)
	}
	if left := time.Until(id.Expires); left < 59*time.Minute || left > time.Hour+time.Second {
		t.Errorf("token expires in %v, want about an hour", left)
	}
	if d := time.UnixMilli(tok.ExpiresMs).Sub(id.Expires); d < -time.Second || d > time.Second {
		t.Errorf("expires_ms %d disagrees with the token's exp %v", tok.ExpiresMs, id.Expires)
	}
	// HEAD says the endpoint is on without minting anything.
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	head, err := http.Head(srv.URL + "/dev/token")
	if err != nil {
		t.Fatal(err)
	}
	head.Body.Close()
	if head.StatusCode != http.StatusOK || head.ContentLength > 0 {
		t.Errorf("HEAD /dev/token: status %d, length %d; want 200 and no body", head.StatusCode, head.ContentLength)
	}
	// Bad input is the client's fault, and nothing is minted.
	for _, q := range []string{"", "?user=", "?user=bad%20name", "?user=" + strings.Repeat("a", 129)} {
		if r := get(t, h, "/dev/token"+q, nil); r.StatusCode != http.StatusBadRequest {
			t.Errorf("GET /dev/token%s: status %d, want 400", q, r.StatusCode)
		}
	}
}

func TestDevTokenConfigValidation(t *testing.T) {
	t.Parallel()
	base := edge.DefaultConfig()
	base.Kafka.Brokers = []string{"127.0.0.1:1"}
	base.Kafka.ClientID = "web-test"
	base.Secret = unitSecret
	if err := base.Validate(); err != nil {
		t.Fatalf("the default config with dev tokens off must be valid: %v", err)
	}
	cases := map[string]func(*edge.Config){
		"no ttl":      func(c *edge.Config) { c.DevTokenGroups = []string{"*"} },
		"no groups":   func(c *edge.Config) { c.DevTokenTTL = time.Hour },
		"bad pattern": func(c *edge.Config) { c.DevTokenTTL = time.Hour; c.DevTokenGroups = []string{"room-["} },
	}
	for name, tweak := range cases {
		c := base
		c.DevTokens = true
		tweak(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "dev token") {
			t.Errorf("%s: Validate() = %v, want an error naming the dev token setting", name, err)
		}
	}
}
