package edge_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/causeway/causeway/edge"
	"github.com/causeway/causeway/edge/client"
	"github.com/causeway/causeway/pipeline/devcluster"
	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
)

// The security suite (issue 7, FAULTS.md rows 18-22): tokens, expiry and
// refresh, origins, limits, isolation, secrets in logs.

type keyPair struct {
	rsa *rsa.PrivateKey
	ed  ed25519.PrivateKey
}

var secKeys = sync.OnceValue(func() keyPair {
	r, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	_, e, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return keyPair{rsa: r, ed: e}
})

// jwksHandler serves the public halves of kp as a JWKS with kids "r1" and
// "e1".
func jwksHandler(kp keyPair) http.Handler {
	enc := base64.RawURLEncoding.EncodeToString
	doc, _ := json.Marshal(map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "kid": "r1", "alg": "RS256", "use": "sig", "n": enc(kp.rsa.N.Bytes()), "e": enc(big.NewInt(int64(kp.rsa.E)).Bytes())},
		{"kty": "OKP", "kid": "e1", "crv": "Ed25519", "alg": "EdDSA", "x": enc(kp.ed.Public().(ed25519.PublicKey))},
	}})
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	})
}

type tokenSpec struct {
	method    jwt.SigningMethod
	key       any
	kid       string
	sub       string
	iss, aud  string
	iat, nbf  time.Time
	exp       time.Time
	noExp     bool
	rawHeader string // replaces the header (alg none)
}

func (s tokenSpec) sign(t testing.TB) string {
	t.Helper()
	now := time.Now()
	c := edge.Claims{Groups: []string{"room-*"}}
	c.Subject = s.sub
	if c.Subject == "" {
		c.Subject = "ann"
	}
	c.Issuer = s.iss
	if s.aud != "" {
		c.Audience = jwt.ClaimStrings{s.aud}
	}
	c.IssuedAt = jwt.NewNumericDate(now)
	if !s.iat.IsZero() {
		c.IssuedAt = jwt.NewNumericDate(s.iat)
	}
	if !s.nbf.IsZero() {
		c.NotBefore = jwt.NewNumericDate(s.nbf)
	}
	if !s.noExp {
		c.ExpiresAt = jwt.NewNumericDate(now.Add(time.Hour))
		if !s.exp.IsZero() {
			c.ExpiresAt = jwt.NewNumericDate(s.exp)
		}
	}
	if s.rawHeader != "" {
		p, _ := json.Marshal(c)
		return base64.RawURLEncoding.EncodeToString([]byte(s.rawHeader)) + "." + base64.RawURLEncoding.EncodeToString(p) + "."
	}
	tok := jwt.NewWithClaims(s.method, c)
	if s.kid != "" {
		tok.Header["kid"] = s.kid
	}
	out, err := tok.SignedString(s.key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return out
}

// helloWith says hello with tok on a raw socket and returns the first
// answer.
func helloWith(t *testing.T, url, tok string) (*websocket.Conn, wireFrame) {
	t.Helper()
	ws := rawDial(t, url)
	if err := ws.Write(ctxT(t, 5*time.Second), websocket.MessageText, []byte(`{"type":"hello","id":"h","token":"`+tok+`"}`)); err != nil {
		t.Fatal(err)
	}
	fs, err := readFrames(t, ws)
	if err != nil {
		t.Fatalf("hello: no answer: %v", err)
	}
	return ws, fs[0]
}

// Every token case through a real edge that takes HS256, and RS256 and
// EdDSA from a JWKS, with an issuer, an audience and a maximum lifetime:
// the good ones are welcomed, every bad one gets `unauthorized` and 4401,
// is counted by reason, and the token never reaches the logs.
func TestHelloTokenMatrix(t *testing.T) {
	kp := secKeys()
	idp := httptest.NewServer(jwksHandler(kp))
	defer idp.Close()
	var logs syncBuffer
	cl := startCluster(t, 1, func(c *devcluster.Config) {
		c.Edge.JWKSURL = idp.URL
		c.Edge.TokenIssuer = "https://id.example"
		c.Edge.TokenAudience = "causeway"
		c.Edge.MaxTokenLifetime = 2 * time.Hour
		c.Edge.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	url := cl.URL(0)
	now := time.Now()
	good := func(s tokenSpec) tokenSpec {
		s.iss, s.aud = "https://id.example", "causeway"
		return s
	}
	hs := good(tokenSpec{method: jwt.SigningMethodHS256, key: testSecret})
	rs := good(tokenSpec{method: jwt.SigningMethodRS256, key: kp.rsa, kid: "r1"})
	ed := good(tokenSpec{method: jwt.SigningMethodEdDSA, key: kp.ed, kid: "e1"})
	for name, s := range map[string]tokenSpec{"HS256": hs, "RS256": rs, "EdDSA": ed} {
		ws, f := helloWith(t, url, s.sign(t))
		if f.Type != "welcome" {
			t.Fatalf("%s: got %+v, want welcome", name, f)
		}
		_ = ws.Close(websocket.StatusNormalClosure, "")
	}

	otherRSA, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	with := func(s tokenSpec, f func(*tokenSpec)) tokenSpec { f(&s); return s }
	der, err := x509.MarshalPKIXPublicKey(&kp.rsa.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaPubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	bad := map[string]tokenSpec{
		"forged (another secret)":        with(hs, func(s *tokenSpec) { s.key = []byte("not-the-secret-not-the-secret-xx") }),
		"wrong RSA key":                  with(rs, func(s *tokenSpec) { s.key = otherRSA }),
		"unknown kid":                    with(rs, func(s *tokenSpec) { s.kid = "r9" }),
		"expired":                        with(hs, func(s *tokenSpec) { s.iat, s.exp = now.Add(-time.Hour), now.Add(-time.Minute) }),
		"not yet valid":                  with(rs, func(s *tokenSpec) { s.nbf = now.Add(time.Minute) }),
		"wrong audience":                 with(ed, func(s *tokenSpec) { s.aud = "billing" }),
		"wrong issuer":                   with(hs, func(s *tokenSpec) { s.iss = "https://evil.example" }),
		"no exp":                         with(hs, func(s *tokenSpec) { s.noExp = true }),
		"lifetime over the maximum":      with(rs, func(s *tokenSpec) { s.exp = now.Add(3 * time.Hour) }),
		"alg none":                       with(hs, func(s *tokenSpec) { s.rawHeader = `{"alg":"none","typ":"JWT"}` }),
		"HS256 with the RSA public key":  with(hs, func(s *tokenSpec) { s.key = rsaPubPEM }),
		"invalid user":                   with(hs, func(s *tokenSpec) { s.sub = "not a user!" }),
		"HS512 (not an accepted method)": with(hs, func(s *tokenSpec) { s.method = jwt.SigningMethodHS512 }),
	}
	var refused []string
	for name, s := range bad {
		t.Run(name, func(t *testing.T) {
			tok := s.sign(t)
			refused = append(refused, tok)
			ws, f := helloWith(t, url, tok)
			if f.Type != "error" || f.Code != "unauthorized" || f.ID != "h" {
				t.Fatalf("got %+v, want error unauthorized answering h", f)
			}
			expectClose(t, ws, 4401)
		})
	}
	if n := scrapeLabeled(t, cl.Edges[0].Addr(), "causeway_edge_auth_failures_total"); n < float64(len(bad)) {
		t.Fatalf("auth failures counted %v, want >= %d", n, len(bad))
	}
	// The log says why each hello was refused, never with the token.
	out := logs.String()
	if !strings.Contains(out, "hello refused") {
		t.Fatalf("no refusal logged:\n%s", out)
	}
	for _, tok := range refused {
		parts := strings.Split(tok, ".")
		for _, p := range []string{tok, parts[1], parts[2]} {
			if len(p) >= 16 && strings.Contains(out, p) {
				t.Fatalf("the edge logged (part of) a token %.40s...:\n%s", p, out)
			}
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the edge's goroutines.
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

// scrapeLabeled sums a metric over all its label values.
func scrapeLabeled(t *testing.T, addr, name string) float64 {
	t.Helper()
	return scrapeWhere(t, addr, name, "")
}

// scrapeWhere sums the series of name whose labels contain match.
func scrapeWhere(t *testing.T, addr, name, match string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	var sum float64
	for _, line := range strings.Split(buf.String(), "\n") {
		if !strings.HasPrefix(line, name+"{") || !strings.Contains(line, match) {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		var v float64
		if err := json.Unmarshal([]byte(line[i+1:]), &v); err == nil {
			sum += v
		}
	}
	return sum
}

// ValidateProduction refuses what only `causeway dev` may do.
func TestValidateProduction(t *testing.T) {
	t.Parallel()
	base := edge.DefaultConfig()
	base.Kafka.Brokers = []string{"127.0.0.1:9092"}
	base.Kafka.ClientID = "t"
	base.Secret = testSecret
	if err := base.ValidateProduction(); err != nil {
		t.Fatalf("a production config: %v", err)
	}
	cases := map[string]func(*edge.Config){
		"short secret":       func(c *edge.Config) { c.Secret = []byte("0123456789abcdef0123456789abcde") },
		"any origin":         func(c *edge.Config) { c.AllowedOrigins = []string{"app.example", "*"} },
		"dev tokens":         func(c *edge.Config) { c.DevTokens, c.DevTokenTTL, c.DevTokenGroups = true, time.Hour, []string{"*"} },
		"JWKS over http":     func(c *edge.Config) { c.JWKSURL = "http://id.example/jwks" },
		"no keys at all":     func(c *edge.Config) { c.Secret = nil },
		"bad origin pattern": func(c *edge.Config) { c.AllowedOrigins = []string{"[x"} },
		"bad proxy":          func(c *edge.Config) { c.TrustedProxies = []string{"10.0.0.0/33"} },
		"half TLS":           func(c *edge.Config) { c.TLSCert = "cert.pem" },
		"negative limit":     func(c *edge.Config) { c.ConnFramesPerSec = -1 },
		"unknown reach":      func(c *edge.Config) { c.Reach = "friends" },
		"negative body":      func(c *edge.Config) { c.MaxBodyBytes = -1 },
	}
	for name, f := range cases {
		c := base
		f(&c)
		if err := c.ValidateProduction(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Both reach policies, and the zero value (shared_group), are valid.
	for _, r := range []string{edge.ReachSharedGroup, edge.ReachAny, ""} {
		c := base
		c.Reach = r
		if err := c.ValidateProduction(); err != nil {
			t.Errorf("reach %q refused: %v", r, err)
		}
	}
	// The dev cluster's permissions stay valid for Validate.
	dev := base
	dev.AllowedOrigins = []string{"*"}
	dev.Secret = []byte("short")
	if err := dev.Validate(); err != nil {
		t.Errorf("dev config refused by Validate: %v", err)
	}
}

// readUntil reads frames until one satisfies ok, failing on close or
// timeout.
func readUntil(t *testing.T, ws *websocket.Conn, ok func(wireFrame) bool) wireFrame {
	t.Helper()
	for {
		fs, err := readFrames(t, ws)
		if err != nil {
			t.Fatalf("connection ended while waiting: %v", err)
		}
		for _, f := range fs {
			if ok(f) {
				return f
			}
		}
	}
}

func write(t *testing.T, ws *websocket.Conn, frame string) {
	t.Helper()
	if err := ws.Write(ctxT(t, 5*time.Second), websocket.MessageText, []byte(frame)); err != nil {
		t.Fatalf("write %.60s: %v", frame, err)
	}
}

// A session ends with unauthorized and 4401 when its token expires, unless
// a refresh with a token for the same user moved the expiry; a refused
// refresh leaves the current expiry in force.
func TestTokenExpiryAndRefresh(t *testing.T) {
	cl := startCluster(t, 1, nil)
	url := cl.URL(0)
	short := func(user string, ttl time.Duration, groups ...string) string {
		tok, err := edge.Mint(testSecret, user, groups, ttl, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	t.Run("expires", func(t *testing.T) {
		t.Parallel()
		tok := short("ann", 2*time.Second, "room-*")
		exp := time.Now().Add(2 * time.Second).Truncate(time.Second) // exp has whole seconds
		ws, f := helloWith(t, url, tok)
		if f.Type != "welcome" {
			t.Fatalf("hello: %+v", f)
		}
		fs, err := readFrames(t, ws)
		if err != nil || fs[0].Type != "error" || fs[0].Code != "unauthorized" {
			t.Fatalf("at expiry got %+v %v, want error unauthorized", fs, err)
		}
		at := time.Now()
		expectClose(t, ws, 4401)
		if at.Before(exp.Add(-100*time.Millisecond)) || at.After(exp.Add(1500*time.Millisecond)) {
			t.Fatalf("closed at %s, exp %s", at.Format(time.StampMilli), exp.Format(time.StampMilli))
		}
	})

	t.Run("refreshed", func(t *testing.T) {
		t.Parallel()
		ws, f := helloWith(t, url, short("bea", 2*time.Second, "room-a"))
		if f.Type != "welcome" {
			t.Fatalf("hello: %+v", f)
		}
		// Refused refreshes: garbage, another user's token. The session
		// goes on.
		write(t, ws, `{"type":"refresh","id":"r1","token":"garbage"}`)
		if f := readUntil(t, ws, func(f wireFrame) bool { return f.ID == "r1" }); f.Code != "unauthorized" {
			t.Fatalf("garbage refresh: %+v", f)
		}
		write(t, ws, `{"type":"refresh","id":"r2","token":"`+short("mallory", time.Hour, "*")+`"}`)
		if f := readUntil(t, ws, func(f wireFrame) bool { return f.ID == "r2" }); f.Code != "unauthorized" {
			t.Fatalf("refresh as another user: %+v", f)
		}
		write(t, ws, `{"type":"refresh","id":"r0"}`)
		if f := readUntil(t, ws, func(f wireFrame) bool { return f.ID == "r0" }); f.Code != "bad_request" {
			t.Fatalf("refresh without token: %+v", f)
		}
		// A good refresh, which also widens the groups.
		write(t, ws, `{"type":"join","id":"j1","group":"room-b"}`)
		if f := readUntil(t, ws, func(f wireFrame) bool { return f.ID == "j1" }); f.Code != "forbidden" {
			t.Fatalf("join before refresh: %+v", f)
		}
		write(t, ws, `{"type":"refresh","id":"r3","token":"`+short("bea", time.Hour, "room-*")+`"}`)
		if f := readUntil(t, ws, func(f wireFrame) bool { return f.ID == "r3" }); f.Type != "ack" {
			t.Fatalf("refresh: %+v, want ack", f)
		}
		write(t, ws, `{"type":"join","id":"j2","group":"room-b"}`)
		if f := readUntil(t, ws, func(f wireFrame) bool { return f.ID == "j2" }); f.Type != "ack" {
			t.Fatalf("join after refresh: %+v, want ack", f)
		}
		// Past the first token's exp the session is still served.
		time.Sleep(3 * time.Second)
		write(t, ws, `{"type":"ping","id":"p"}`)
		if f := readUntil(t, ws, func(f wireFrame) bool { return f.ID == "p" }); f.Type != "ack" {
			t.Fatalf("ping after the old exp: %+v", f)
		}
	})

	t.Run("refused refresh keeps the old expiry", func(t *testing.T) {
		t.Parallel()
		ws, f := helloWith(t, url, short("cy", 2*time.Second, "room-*"))
		if f.Type != "welcome" {
			t.Fatalf("hello: %+v", f)
		}
		write(t, ws, `{"type":"refresh","id":"r","token":"`+short("dee", time.Hour, "room-*")+`"}`)
		if f := readUntil(t, ws, func(f wireFrame) bool { return f.ID == "r" }); f.Code != "unauthorized" {
			t.Fatalf("refresh as another user: %+v", f)
		}
		f = readUntil(t, ws, func(f wireFrame) bool { return f.Type == "error" })
		if f.Code != "unauthorized" {
			t.Fatalf("at expiry: %+v", f)
		}
		expectClose(t, ws, 4401)
	})
	t.Run("refresh before hello", func(t *testing.T) {
		t.Parallel()
		ws := rawDial(t, url)
		write(t, ws, `{"type":"refresh","id":"r","token":"`+short("eve", time.Hour)+`"}`)
		if fs, err := readFrames(t, ws); err != nil || fs[0].Code != "unauthorized" {
			t.Fatalf("got %+v %v, want unauthorized", fs, err)
		}
		expectClose(t, ws, 4401)
	})
}

// dialStatus opens a WebSocket with the given Origin (none if empty) and
// returns the connection, or nil and the HTTP status of the refusal.
func dialStatus(t *testing.T, url, origin string) (*websocket.Conn, int) {
	t.Helper()
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	ws, resp, err := websocket.Dial(ctxT(t, 10*time.Second), url, &websocket.DialOptions{Subprotocols: []string{"causeway.v1"}, HTTPHeader: h})
	if err != nil {
		if resp == nil {
			t.Fatalf("dial %s with Origin %q: %v", url, origin, err)
		}
		return nil, resp.StatusCode
	}
	t.Cleanup(func() { _ = ws.CloseNow() })
	return ws, http.StatusSwitchingProtocols
}

// Cross-site WebSocket hijacking: a browser on a foreign site is refused
// at the upgrade (403); the edge's own host and the allow-list pass; a
// request without Origin (not a browser) upgrades but still needs a valid
// hello.
func TestOriginAllowList(t *testing.T) {
	t.Run("default: same host only", func(t *testing.T) {
		cl := startCluster(t, 1, func(c *devcluster.Config) { c.Edge.HelloTimeout = time.Second })
		url, addr := cl.URL(0), cl.Edges[0].Addr()
		for _, o := range []string{"http://evil.example", "https://" + addr + ".evil.example", "null", "http://127.0.0.2:" + strings.Split(addr, ":")[1]} {
			if _, code := dialStatus(t, url, o); code != http.StatusForbidden {
				t.Errorf("Origin %s: status %d, want 403", o, code)
			}
		}
		// The page the edge serves itself.
		ws, code := dialStatus(t, url, "http://"+addr)
		if code != http.StatusSwitchingProtocols {
			t.Fatalf("same-host Origin: status %d", code)
		}
		write(t, ws, `{"type":"hello","id":"h","token":"`+token(t, "ann", "room-*")+`"}`)
		if fs, err := readFrames(t, ws); err != nil || fs[0].Type != "welcome" {
			t.Fatalf("same-host hello: %+v %v", fs, err)
		}
		// No Origin: upgraded, but a bad token or none is still refused.
		ws, code = dialStatus(t, url, "")
		if code != http.StatusSwitchingProtocols {
			t.Fatalf("no Origin: status %d", code)
		}
		write(t, ws, `{"type":"hello","id":"h","token":"forged.token.here"}`)
		if fs, err := readFrames(t, ws); err != nil || fs[0].Code != "unauthorized" {
			t.Fatalf("no Origin, bad token: %+v %v", fs, err)
		}
		expectClose(t, ws, 4401)
		ws, _ = dialStatus(t, url, "")
		expectClose(t, ws, 4401) // no hello at all
		if n := scrapeWhere(t, addr, "causeway_edge_upgrades_refused_total", `reason="origin"`); n != 4 {
			t.Fatalf("origin refusals counted %v, want 4", n)
		}
	})
	t.Run("allow-list", func(t *testing.T) {
		cl := startCluster(t, 1, func(c *devcluster.Config) {
			c.Edge.AllowedOrigins = []string{"app.example", "*.trusted.example", "https://secure.example"}
		})
		url := cl.URL(0)
		for o, want := range map[string]int{
			"https://app.example":        http.StatusSwitchingProtocols,
			"https://APP.example":        http.StatusSwitchingProtocols,
			"https://eu.trusted.example": http.StatusSwitchingProtocols,
			"https://secure.example":     http.StatusSwitchingProtocols,
			"http://secure.example":      http.StatusForbidden, // the pattern names the scheme
			"https://app.example.evil":   http.StatusForbidden,
			"https://trusted.example":    http.StatusForbidden,
			"https://evil.example":       http.StatusForbidden,
			"null":                       http.StatusForbidden,
		} {
			ws, code := dialStatus(t, url, o)
			if code != want {
				t.Errorf("Origin %s: status %d, want %d", o, code, want)
			}
			if ws != nil {
				_ = ws.CloseNow()
			}
		}
	})
}

// authed is a raw socket that said hello as user.
func authed(t *testing.T, url, user string) *websocket.Conn {
	t.Helper()
	ws, f := helloWith(t, url, token(t, user, "room-*"))
	if f.Type != "welcome" {
		t.Fatalf("hello as %s: %+v", user, f)
	}
	return ws
}

// pings returns n ping frames in one NDJSON message, ids prefix0..
func pings(prefix string, n int, pad int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(`{"type":"ping","id":"` + prefix + itoa(i) + `"`)
		if pad > 0 {
			b.WriteString(`,"pad":"` + strings.Repeat("p", pad) + `"`)
		}
		b.WriteString(`}`)
	}
	return b.String()
}

// tally reads answers until the connection ends or quiet passes with
// nothing, counting acks and rate_limited errors by reason, and the close
// status (-1 while open). A Read whose context ends closes a coder/websocket
// connection, so a reader goroutine per socket (see reader) does the reads.
type tallyResult struct {
	acks    int
	limited map[string]int
	other   []wireFrame
	closed  websocket.StatusCode
}

type sockReader struct {
	frames chan wireFrame
	done   chan struct{}
	status websocket.StatusCode
}

var readers sync.Map // *websocket.Conn -> *sockReader

// reader returns the one reader goroutine of ws, starting it.
func reader(t *testing.T, ws *websocket.Conn) *sockReader {
	if r, ok := readers.Load(ws); ok {
		return r.(*sockReader)
	}
	r := &sockReader{frames: make(chan wireFrame, 1<<16), done: make(chan struct{})}
	readers.Store(ws, r)
	go func() {
		defer close(r.done)
		for {
			_, msg, err := ws.Read(context.Background())
			if err != nil {
				r.status = websocket.CloseStatus(err)
				return
			}
			for _, line := range strings.Split(string(msg), "\n") {
				var f wireFrame
				if json.Unmarshal([]byte(line), &f) != nil {
					f = wireFrame{Type: "malformed", Message: line}
				}
				r.frames <- f
			}
		}
	}()
	return r
}

func tally(t *testing.T, ws *websocket.Conn, quiet time.Duration) tallyResult {
	t.Helper()
	rd := reader(t, ws)
	res := tallyResult{limited: map[string]int{}, closed: -1}
	for {
		select {
		case f := <-rd.frames:
			switch {
			case f.Type == "malformed":
				t.Fatalf("malformed frame %q", f.Message)
			case f.Type == "ack":
				res.acks++
			case f.Type == "error" && f.Code == "rate_limited":
				res.limited[f.Reason]++
				if f.Message == "" {
					t.Fatalf("rate_limited without a message: %+v", f)
				}
			default:
				res.other = append(res.other, f)
			}
		case <-rd.done:
			// Take what was read before the close.
			for {
				select {
				case f := <-rd.frames:
					if f.Type == "ack" {
						res.acks++
					} else if f.Code == "rate_limited" {
						res.limited[f.Reason]++
					} else {
						res.other = append(res.other, f)
					}
					continue
				default:
				}
				break
			}
			res.closed = rd.status
			return res
		case <-time.After(quiet):
			return res
		}
	}
}

// Frames and bytes per second, per connection and per user: over the
// bucket, frames get rate_limited (with the request id and the limit as
// reason) and are dropped; refusals that persist close with 4408; a
// client under its rate is never refused; other users are unaffected.
func TestRateLimits(t *testing.T) {
	t.Run("frames per connection", func(t *testing.T) {
		cl := startCluster(t, 1, func(c *devcluster.Config) {
			c.Edge.ConnFramesPerSec = 20 // bucket of 40
			c.Edge.MaxRateLimited = 30
		})
		url := cl.URL(0)
		// Under the rate: 10 pings a second for 2 s, never refused.
		calm := authed(t, url, "calm")
		for i := 0; i < 20; i++ {
			write(t, calm, pings("c"+itoa(i)+"-", 1, 0))
			time.Sleep(100 * time.Millisecond)
		}
		if r := tally(t, calm, 500*time.Millisecond); r.acks != 20 || len(r.limited) != 0 || r.closed != -1 {
			t.Fatalf("calm client: %+v, want 20 acks and nothing refused", r)
		}
		// One burst over the bucket, then quiet: refused, not closed.
		bursty := authed(t, url, "bursty")
		write(t, bursty, pings("b", 60, 0))
		r := tally(t, bursty, time.Second)
		if r.acks < 38 || r.acks > 45 || r.limited["conn_frames"] != 60-r.acks || r.closed != -1 {
			t.Fatalf("burst of 60 over a bucket of 40: %+v", r)
		}
		write(t, bursty, pings("again", 1, 0)) // the bucket refilled
		if r := tally(t, bursty, 500*time.Millisecond); r.acks != 1 {
			t.Fatalf("after the burst: %+v", r)
		}
		// A flood: refused, then closed with 4408.
		flood := authed(t, url, "flood")
		write(t, flood, pings("f", 200, 0))
		r = tally(t, flood, 5*time.Second)
		if r.closed != 4408 || r.limited["conn_frames"] != 30 {
			t.Fatalf("flood: %+v, want 30 rate_limited then close 4408", r)
		}
		if n := scrapeWhere(t, cl.Edges[0].Addr(), "causeway_edge_limited_total", `limit="conn_frames"`); n < 50 {
			t.Fatalf("conn_frames refusals counted %v", n)
		}
		if n := scrapeWhere(t, cl.Edges[0].Addr(), "causeway_edge_closes_total", `code="4408"`); n != 1 {
			t.Fatalf("4408 closes counted %v, want 1", n)
		}
	})
	t.Run("bytes per connection", func(t *testing.T) {
		cl := startCluster(t, 1, func(c *devcluster.Config) {
			c.Edge.ConnBytesPerSec = 64 << 10 // bucket of one message, 256 KiB
			c.Edge.MaxRateLimited = 5
		})
		ws := authed(t, cl.URL(0), "bulky")
		for i := 0; i < 8; i++ { // 8 messages of ~60 KiB: 4 fit
			write(t, ws, pings("m"+itoa(i)+"-", 1, 60<<10))
		}
		r := tally(t, ws, 2*time.Second)
		if r.acks < 4 || r.acks > 5 || r.limited["conn_bytes"] != 8-r.acks {
			t.Fatalf("bytes: %+v", r)
		}
	})
	t.Run("per user, over all sessions", func(t *testing.T) {
		cl := startCluster(t, 1, func(c *devcluster.Config) {
			c.Edge.ConnFramesPerSec = 0 // off: only the user's bucket
			c.Edge.UserFramesPerSec = 20
			c.Edge.MaxRateLimited = 1000
		})
		url := cl.URL(0)
		a, b := authed(t, url, "twin"), authed(t, url, "twin")
		other := authed(t, url, "other")
		write(t, a, pings("a", 30, 0))
		write(t, b, pings("b", 30, 0))
		write(t, other, pings("o", 30, 0))
		ra, rb, ro := tally(t, a, time.Second), tally(t, b, time.Second), tally(t, other, time.Second)
		if got := ra.acks + rb.acks; got < 38 || got > 45 || ra.limited["user_frames"]+rb.limited["user_frames"] != 60-got {
			t.Fatalf("twin sessions: %+v %+v, want about 40 acks between them", ra, rb)
		}
		if ro.acks != 30 || len(ro.limited) != 0 {
			t.Fatalf("another user was limited: %+v", ro)
		}
	})
	t.Run("user bytes", func(t *testing.T) {
		cl := startCluster(t, 1, func(c *devcluster.Config) {
			c.Edge.UserBytesPerSec = 64 << 10
		})
		url := cl.URL(0)
		a, b := authed(t, url, "heavy"), authed(t, url, "heavy")
		for i := 0; i < 4; i++ {
			write(t, a, pings("a"+itoa(i)+"-", 1, 60<<10))
			write(t, b, pings("b"+itoa(i)+"-", 1, 60<<10))
		}
		ra, rb := tally(t, a, 2*time.Second), tally(t, b, 2*time.Second)
		if got := ra.acks + rb.acks; got < 4 || got > 5 || ra.limited["user_bytes"]+rb.limited["user_bytes"] != 8-got {
			t.Fatalf("user bytes: %+v %+v", ra, rb)
		}
	})
}

// dialFrom dials with an X-Forwarded-For header (none if empty).
func dialFrom(t *testing.T, url, xff string) (*websocket.Conn, int) {
	t.Helper()
	h := http.Header{}
	if xff != "" {
		h.Set("X-Forwarded-For", xff)
	}
	ws, resp, err := websocket.Dial(ctxT(t, 10*time.Second), url, &websocket.DialOptions{Subprotocols: []string{"causeway.v1"}, HTTPHeader: h})
	if err != nil {
		if resp == nil {
			t.Fatalf("dial: %v", err)
		}
		if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
			t.Fatalf("429 without Retry-After")
		}
		return nil, resp.StatusCode
	}
	t.Cleanup(func() { _ = ws.CloseNow() })
	return ws, http.StatusSwitchingProtocols
}

// Connections per client address, new connections per second per address
// (HTTP 429 before the upgrade), X-Forwarded-For only from trusted
// proxies, sessions per user and subscriptions per session.
func TestConnectionLimits(t *testing.T) {
	t.Run("connections per IP", func(t *testing.T) {
		cl := startCluster(t, 1, func(c *devcluster.Config) { c.Edge.MaxConnsPerIP = 5; c.Edge.IPLimitsExempt = nil })
		url := cl.URL(0)
		var open []*websocket.Conn
		for i := 0; i < 5; i++ {
			ws, code := dialFrom(t, url, "")
			if code != 101 {
				t.Fatalf("connection %d: status %d", i, code)
			}
			open = append(open, ws)
		}
		if _, code := dialFrom(t, url, "203.0.113.9"); code != http.StatusTooManyRequests {
			t.Fatalf("6th connection (X-Forwarded-For from an untrusted peer is ignored): status %d, want 429", code)
		}
		_ = open[0].Close(websocket.StatusNormalClosure, "")
		deadline := time.Now().Add(5 * time.Second)
		for {
			ws, code := dialFrom(t, url, "")
			if code == 101 {
				authedOn(t, ws, "ann")
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("a closed connection's slot was not released: %d", code)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if n := scrapeWhere(t, cl.Edges[0].Addr(), "causeway_edge_upgrades_refused_total", `reason="ip_conns"`); n < 1 {
			t.Fatalf("ip_conns refusals counted %v", n)
		}
	})
	t.Run("connection rate per IP", func(t *testing.T) {
		cl := startCluster(t, 1, func(c *devcluster.Config) {
			c.Edge.MaxConnsPerIP = 0
			c.Edge.ConnRatePerIP = 5 // bucket of 10
			c.Edge.IPLimitsExempt = nil
		})
		url := cl.URL(0)
		ok, refused := 0, 0
		for i := 0; i < 20; i++ {
			ws, code := dialFrom(t, url, "")
			switch code {
			case 101:
				ok++
				_ = ws.CloseNow()
			case http.StatusTooManyRequests:
				refused++
			default:
				t.Fatalf("status %d", code)
			}
		}
		if ok < 10 || ok > 12 || refused != 20-ok {
			t.Fatalf("20 dials at once with a bucket of 10: %d upgraded, %d refused", ok, refused)
		}
		time.Sleep(time.Second) // 5 more tokens
		if _, code := dialFrom(t, url, ""); code != 101 {
			t.Fatalf("after a second: status %d", code)
		}
	})
	t.Run("trusted proxy", func(t *testing.T) {
		cl := startCluster(t, 1, func(c *devcluster.Config) {
			c.Edge.MaxConnsPerIP = 2
			c.Edge.TrustedProxies = []string{"127.0.0.0/8"}
		})
		// 127.0.0.1 itself is exempt (the default); the clients behind it
		// are not.
		url := cl.URL(0)
		for i := 0; i < 2; i++ {
			if _, code := dialFrom(t, url, "198.51.100.1, 203.0.113.1"); code != 101 {
				t.Fatalf("client A #%d: %d", i, code)
			}
		}
		if _, code := dialFrom(t, url, "203.0.113.1"); code != http.StatusTooManyRequests {
			t.Fatalf("client A #3: %d, want 429", code)
		}
		// Another client behind the same proxy has its own count; a
		// spoofed hop before the real one does not matter.
		if _, code := dialFrom(t, url, "203.0.113.1, 203.0.113.2"); code != 101 {
			t.Fatalf("client B: %d", code)
		}
		// IPv6 clients count per /64.
		for i, a := range []string{"2001:db8:1:1::1", "2001:db8:1:1::2"} {
			if _, code := dialFrom(t, url, a); code != 101 {
				t.Fatalf("v6 #%d: %d", i, code)
			}
		}
		if _, code := dialFrom(t, url, "2001:db8:1:1:ffff::3"); code != http.StatusTooManyRequests {
			t.Fatalf("third address of one /64: %d, want 429", code)
		}
	})
	t.Run("loopback exempt by default", func(t *testing.T) {
		cl := startCluster(t, 1, func(c *devcluster.Config) { c.Edge.MaxConnsPerIP, c.Edge.ConnRatePerIP = 2, 1 })
		for i := 0; i < 5; i++ {
			if _, code := dialFrom(t, cl.URL(0), ""); code != 101 {
				t.Fatalf("loopback connection %d: %d", i, code)
			}
		}
	})
	t.Run("sessions per user", func(t *testing.T) {
		cl := startCluster(t, 1, func(c *devcluster.Config) { c.Edge.MaxSessionsPerUser = 2 })
		url := cl.URL(0)
		first := authed(t, url, "multi")
		authed(t, url, "multi")
		ws, f := helloWith(t, url, token(t, "multi", "room-*"))
		if f.Code != "rate_limited" || f.Reason != "sessions" || f.ID != "h" {
			t.Fatalf("third session: %+v, want rate_limited (sessions)", f)
		}
		expectClose(t, ws, 4408)
		authed(t, url, "someone-else")
		_ = first.Close(websocket.StatusNormalClosure, "")
		deadline := time.Now().Add(5 * time.Second)
		for {
			ws, f := helloWith(t, url, token(t, "multi", "room-*"))
			if f.Type == "welcome" {
				break
			}
			_ = ws.CloseNow()
			if time.Now().After(deadline) {
				t.Fatalf("a closed session was not released: %+v", f)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	t.Run("subscriptions per session", func(t *testing.T) {
		// The personal stream is one: 3 leaves room for two more.
		cl := startCluster(t, 1, func(c *devcluster.Config) { c.Edge.MaxSubscriptions = 3 })
		c := dial(t, cl.URL(0), "subby", "room-*")
		joinSub(t, c, "room-1")
		joinSub(t, c, "room-2")
		ctx := ctxT(t, 10*time.Second)
		if err := c.Join(ctx, "room-3"); err != nil {
			t.Fatal(err)
		}
		_, err := c.Subscribe(ctx, "room-3", nil)
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Code != "rate_limited" || ce.Reason != "subscriptions" {
			t.Fatalf("third group: %v, want rate_limited (subscriptions)", err)
		}
		if _, err := c.Subscribe(ctx, "room-2", nil); err != nil {
			t.Fatalf("subscribing again to a group held: %v", err)
		}
		err = c.WriteRaw(ctx, []byte(`{"type":"presence","id":"pr","users":["x"]}`))
		if err != nil {
			t.Fatal(err)
		}
		if f := next(t, c, 5*time.Second, "error"); f.Code != "rate_limited" || f.ID != "pr" {
			t.Fatalf("presence over the limit: %+v", f)
		}
		if err := c.Unsubscribe(ctx, "room-1"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Subscribe(ctx, "room-3", nil); err != nil {
			t.Fatalf("after unsubscribing: %v", err)
		}
	})
}

// authedOn says hello on an open socket.
func authedOn(t *testing.T, ws *websocket.Conn, user string) *websocket.Conn {
	t.Helper()
	write(t, ws, `{"type":"hello","id":"h","token":"`+token(t, user, "room-*")+`"}`)
	if fs, err := readFrames(t, ws); err != nil || fs[0].Type != "welcome" {
		t.Fatalf("hello: %+v %v", fs, err)
	}
	return ws
}

// A connection from which nothing comes for edge.idle_timeout is closed
// with 4408; ping frames or WebSocket pings keep it open.
func TestIdleTimeout(t *testing.T) {
	cl := startCluster(t, 1, func(c *devcluster.Config) { c.Edge.IdleTimeout = time.Second })
	url := cl.URL(0)
	silent := authed(t, url, "silent")
	chatty := authed(t, url, "chatty")
	pinger, err := client.Dial(ctxT(t, 10*time.Second), url, token(t, "pinger"), &client.Options{PingInterval: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer pinger.Close()
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 8; i++ {
			time.Sleep(300 * time.Millisecond)
			if chatty.Write(context.Background(), websocket.MessageText, []byte(`{"type":"ping","id":"p"}`)) != nil {
				return
			}
		}
	}()
	r := tally(t, silent, 5*time.Second)
	if r.closed != 4408 {
		t.Fatalf("silent connection: %+v, want close 4408", r)
	}
	if d := time.Since(start); d < 900*time.Millisecond || d > 3*time.Second {
		t.Fatalf("silent connection closed after %s, want about 1s", d)
	}
	<-done
	if r := tally(t, chatty, 200*time.Millisecond); r.closed != -1 || r.acks < 7 {
		t.Fatalf("connection sending ping frames: %+v", r)
	}
	select {
	case <-pinger.Done():
		t.Fatalf("client sending WebSocket pings was closed: %v", pinger.Err())
	default:
	}
}

// Secrets and data stay out of logs and metrics (issue 7, item 9): after a
// session of everything (sends, refusals, a refused refresh, limits, bad
// frames), neither the edge's log at debug level nor /metrics holds a
// token, a message body, a user ID or a group ID; metric labels are the
// bounded ones.
func TestNoSecretsInLogsOrMetrics(t *testing.T) {
	var logs syncBuffer
	cl := startCluster(t, 1, func(c *devcluster.Config) {
		c.Edge.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c.Edge.MaxSubscriptions = 3
		c.Edge.ConnFramesPerSec = 50
	})
	url, addr := cl.URL(0), cl.Edges[0].Addr()
	const (
		user   = "user-zq7"
		group  = "room-zq8"
		secret = "body-zq9-confidential"
	)
	tok := token(t, user, "room-*")
	c := dial(t, url, user, "room-*")
	joinSub(t, c, group)
	ctx := ctxT(t, 20*time.Second)
	if _, err := c.Send(ctx, group, "m1", secret); err != nil {
		t.Fatal(err)
	}
	// Refusals of every kind on a raw socket of the same user.
	ws := authed(t, url, user)
	other := token(t, "user-other-zq", "room-*")
	expired, err := mintAt(time.Now().Add(-3*time.Hour), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{
		`{"type":"refresh","id":"r1","token":"` + other + `"}`,
		`{"type":"refresh","id":"r2","token":"` + expired + `"}`,
		`{"type":"send","id":"s1","group":"` + group + `","client_msg_id":"x","body":"` + secret + `"}`, // accepted: the user is a member
		`{"type":"send","id":"s2","group":"room-zq-nope","client_msg_id":"y","body":"` + secret + `"}`,
		`{"type":"join","id":"j","group":"lobby-zq"}`,
		`{"type":"subscribe","id":"a","group":"room-zq-a"}`,
		`{"type":"subscribe","id":"b","group":"room-zq-b"}`,
		`{"type":"subscribe","id":"c","group":"room-zq-c"}`,
		`{"type":"send","id":"s3","group":"` + group + `","body":"` + secret + `"}`,
		`{"type":"hello","id":"h2","token":"` + tok + `"}`,
		pings("p", 150, 0),
	} {
		write(t, ws, f)
	}
	tally(t, ws, time.Second)
	// And refused hellos.
	for _, bad := range []string{expired, tok + "x", strings.Replace(tok, ".", ".e30.", 1)} {
		w, f := helloWith(t, url, bad)
		if f.Code != "unauthorized" {
			t.Fatalf("hello: %+v", f)
		}
		expectClose(t, w, 4401)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var m bytes.Buffer
	_, _ = m.ReadFrom(resp.Body)
	resp.Body.Close()
	metrics, out := m.String(), logs.String()
	if !strings.Contains(out, "refresh refused") || !strings.Contains(out, "hello refused") {
		t.Fatalf("the refusals were not logged:\n%s", out)
	}
	for _, s := range []string{tok, other, expired, strings.Split(tok, ".")[2], strings.Split(other, ".")[2], secret} {
		if strings.Contains(out, s) {
			t.Errorf("the edge's log holds %.30s...", s)
		}
		if strings.Contains(metrics, s) {
			t.Errorf("/metrics holds %.30s...", s)
		}
	}
	for _, s := range []string{user, group, "zq"} {
		if strings.Contains(metrics, s) {
			t.Errorf("/metrics holds a user or group ID (%s)", s)
		}
	}
	// Bounded label sets only: frame types, codes, reasons, limits,
	// topics, partition numbers and histogram buckets.
	allowed := map[string]bool{"type": true, "code": true, "reason": true, "limit": true, "topic": true, "partition": true, "le": true}
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, "causeway_") && strings.Contains(line, "{") {
			labels := line[strings.IndexByte(line, '{')+1 : strings.IndexByte(line, '}')]
			for _, kv := range strings.Split(labels, ",") {
				if k, _, _ := strings.Cut(kv, "="); !allowed[k] {
					t.Errorf("metric label %q in %s", k, line)
				}
			}
		}
	}
	for _, want := range []string{`causeway_edge_auth_failures_total{reason="expired"}`, `causeway_edge_auth_failures_total{reason="other_user"}`,
		`causeway_edge_auth_failures_total{reason="signature"}`, `causeway_edge_errors_total{code="not_member"}`,
		`causeway_edge_errors_total{code="forbidden"}`, `causeway_edge_limited_total{limit="subscriptions"}`,
		`causeway_edge_limited_total{limit="conn_frames"}`, `causeway_edge_errors_total{code="rate_limited"}`} {
		if !regexpLine(metrics, want) {
			t.Errorf("/metrics lacks a non-zero %s", want)
		}
	}
}

// regexpLine reports whether metrics has series with a value above 0.
func regexpLine(metrics, series string) bool {
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, series+" ") {
			return !strings.HasSuffix(line, " 0")
		}
	}
	return false
}

// TLS in the edge: wss:// with the configured certificate; plain ws:// on
// the same port fails.
func TestEdgeTLS(t *testing.T) {
	dir := t.TempDir()
	cf, kf := dir+"/cert.pem", dir+"/key.pem"
	writeTestCert(t, cf, kf)
	cl := startCluster(t, 1, func(c *devcluster.Config) { c.Edge.TLSCert, c.Edge.TLSKey = cf, kf })
	pool := x509.NewCertPool()
	b, err := os.ReadFile(cf)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(b)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	url := "wss://" + cl.Edges[0].Addr() + "/v1/ws"
	ws, _, err := websocket.Dial(ctxT(t, 10*time.Second), url, &websocket.DialOptions{Subprotocols: []string{"causeway.v1"}, HTTPClient: hc})
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	defer ws.CloseNow()
	authedOn(t, ws, "ann")
	if _, _, err := websocket.Dial(ctxT(t, 5*time.Second), cl.URL(0), &websocket.DialOptions{Subprotocols: []string{"causeway.v1"}}); err == nil {
		t.Fatal("plain ws:// upgraded on a TLS edge")
	}
}

func writeTestCert(t *testing.T, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "edge"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
}
