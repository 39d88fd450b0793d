package edge

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var unitSecret = []byte("unit-test-secret-0123456789abcdef0123")

// testKeys are generated once: RSA key generation is slow under -race.
var testKeys = sync.OnceValue(func() (k struct {
	rsaA, rsaB *rsa.PrivateKey
	ed         ed25519.PrivateKey
}) {
	var err error
	if k.rsaA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if k.rsaB, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		panic(err)
	}
	return k
})

// claims are valid claims for ann, issued now for an hour.
func claims(mod ...func(*Claims)) Claims {
	now := time.Now()
	c := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   "ann",
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
		},
		Groups: []string{"room-*"},
	}
	for _, m := range mod {
		m(&c)
	}
	return c
}

func sign(t testing.TB, m jwt.SigningMethod, key any, kid string, c Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", m.Alg(), err)
	}
	return s
}

// unsigned builds header.payload. with no signature, for alg none and
// other forgeries jwt refuses to sign.
func unsigned(t testing.TB, header map[string]any, c Claims) string {
	t.Helper()
	h, _ := json.Marshal(header)
	p, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p) + "."
}

func pemPublic(t testing.TB, pub any, kid string) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]string
	if kid != "" {
		h = map[string]string{"kid": kid}
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Headers: h, Bytes: der})
}

func writeFile(t testing.TB, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keys.pem")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func newVerifier(t testing.TB, cfg VerifierConfig) *Verifier {
	t.Helper()
	v, err := NewVerifierFrom(cfg)
	if err != nil {
		t.Fatalf("NewVerifierFrom: %v", err)
	}
	return v
}

func wantRefused(t *testing.T, v *Verifier, tok, reason string) {
	t.Helper()
	id, err := v.Verify(tok)
	if err == nil {
		t.Fatalf("token accepted as %+v, want refused (%s)", id, reason)
	}
	var te *TokenError
	if !errors.As(err, &te) || te.Reason != reason {
		t.Fatalf("refused with %v, want reason %s", err, reason)
	}
	if strings.Contains(err.Error(), tok) {
		t.Fatalf("the error repeats the token: %v", err)
	}
}

func wantAccepted(t *testing.T, v *Verifier, tok string) Identity {
	t.Helper()
	id, err := v.Verify(tok)
	if err != nil {
		t.Fatalf("valid token refused: %v", err)
	}
	if id.User != "ann" || id.Expires.IsZero() {
		t.Fatalf("identity %+v, want ann with an expiry", id)
	}
	return id
}

// Every token case against a verifier that accepts HS256, RS256 and
// EdDSA with issuer, audience and a maximum lifetime configured.
func TestVerifierTokenMatrix(t *testing.T) {
	t.Parallel()
	k := testKeys()
	file := writeFile(t, append(pemPublic(t, &k.rsaA.PublicKey, "rsa-a"), pemPublic(t, k.ed.Public(), "ed-1")...))
	v := newVerifier(t, VerifierConfig{
		Secret: unitSecret, PublicKeyFile: file,
		Issuer: "https://issuer.example", Audience: "causeway", MaxLifetime: 24 * time.Hour,
	})
	ok := func(c *Claims) {
		c.Issuer = "https://issuer.example"
		c.Audience = jwt.ClaimStrings{"other", "causeway"}
	}
	now := time.Now()

	t.Run("valid HS256", func(t *testing.T) {
		id := wantAccepted(t, v, sign(t, jwt.SigningMethodHS256, unitSecret, "", claims(ok)))
		if len(id.Groups) != 1 || !id.MayJoin("room-1") || id.MayJoin("hall") {
			t.Fatalf("groups %v", id.Groups)
		}
	})
	t.Run("valid RS256", func(t *testing.T) { wantAccepted(t, v, sign(t, jwt.SigningMethodRS256, k.rsaA, "rsa-a", claims(ok))) })
	t.Run("valid RS256 without kid", func(t *testing.T) { wantAccepted(t, v, sign(t, jwt.SigningMethodRS256, k.rsaA, "", claims(ok))) })
	t.Run("valid EdDSA", func(t *testing.T) { wantAccepted(t, v, sign(t, jwt.SigningMethodEdDSA, k.ed, "ed-1", claims(ok))) })

	cases := []struct {
		name, reason string
		tok          func() string
	}{
		{"forged HS256 (another secret)", authSignature, func() string {
			return sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-xx"), "", claims(ok))
		}},
		{"tampered payload", authSignature, func() string {
			good := strings.Split(sign(t, jwt.SigningMethodHS256, unitSecret, "", claims(ok)), ".")
			evil := strings.Split(sign(t, jwt.SigningMethodHS256, unitSecret, "", claims(ok, func(c *Claims) { c.Subject = "root"; c.Groups = []string{"*"} })), ".")
			return good[0] + "." + evil[1] + "." + good[2]
		}},
		{"wrong RSA key", authSignature, func() string { return sign(t, jwt.SigningMethodRS256, k.rsaB, "rsa-a", claims(ok)) }},
		{"wrong RSA key without kid", authSignature, func() string { return sign(t, jwt.SigningMethodRS256, k.rsaB, "", claims(ok)) }},
		{"unknown kid", authUnknownKey, func() string { return sign(t, jwt.SigningMethodRS256, k.rsaA, "nope", claims(ok)) }},
		{"kid of a key of another type", authUnknownKey, func() string { return sign(t, jwt.SigningMethodRS256, k.rsaA, "ed-1", claims(ok)) }},
		{"expired", authExpired, func() string {
			return sign(t, jwt.SigningMethodHS256, unitSecret, "", claims(ok, func(c *Claims) {
				c.IssuedAt = jwt.NewNumericDate(now.Add(-2 * time.Hour))
				c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Minute))
			}))
		}},
		{"no exp", authClaims, func() string {
			return sign(t, jwt.SigningMethodHS256, unitSecret, "", claims(ok, func(c *Claims) { c.ExpiresAt = nil }))
		}},
		{"not yet valid (nbf)", authNotYetValid, func() string {
			return sign(t, jwt.SigningMethodHS256, unitSecret, "", claims(ok, func(c *Claims) { c.NotBefore = jwt.NewNumericDate(now.Add(time.Minute)) }))
		}},
		{"issued in the future", authNotYetValid, func() string {
			return sign(t, jwt.SigningMethodEdDSA, k.ed, "ed-1", claims(ok, func(c *Claims) { c.IssuedAt = jwt.NewNumericDate(now.Add(time.Minute)) }))
		}},
		{"wrong audience", authAudience, func() string {
			return sign(t, jwt.SigningMethodHS256, unitSecret, "", claims(ok, func(c *Claims) { c.Audience = jwt.ClaimStrings{"billing"} }))
		}},
		{"no audience", authAudience, func() string {
			return sign(t, jwt.SigningMethodRS256, k.rsaA, "rsa-a", claims(ok, func(c *Claims) { c.Audience = nil }))
		}},
		{"wrong issuer", authIssuer, func() string {
			return sign(t, jwt.SigningMethodHS256, unitSecret, "", claims(ok, func(c *Claims) { c.Issuer = "https://evil.example" }))
		}},
		{"no issuer", authIssuer, func() string {
			return sign(t, jwt.SigningMethodHS256, unitSecret, "", claims(ok, func(c *Claims) { c.Issuer = "" }))
		}},
		{"lifetime over the maximum", authLifetime, func() string {
			return sign(t, jwt.SigningMethodHS256, unitSecret, "", claims(ok, func(c *Claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(48 * time.Hour)) }))
		}},
		{"no iat and exp beyond the maximum", authLifetime, func() string {
			return sign(t, jwt.SigningMethodRS256, k.rsaA, "rsa-a", claims(ok, func(c *Claims) {
				c.IssuedAt = nil
				c.ExpiresAt = jwt.NewNumericDate(now.Add(30 * 24 * time.Hour))
			}))
		}},
		{"invalid sub", authClaims, func() string {
			return sign(t, jwt.SigningMethodHS256, unitSecret, "", claims(ok, func(c *Claims) { c.Subject = "ann smith\n" }))
		}},
		{"bad group pattern", authClaims, func() string {
			return sign(t, jwt.SigningMethodHS256, unitSecret, "", claims(ok, func(c *Claims) { c.Groups = []string{"room-["} }))
		}},
		{"alg none", authAlgorithm, func() string { return unsigned(t, map[string]any{"alg": "none", "typ": "JWT"}, claims(ok)) }},
		{"alg None", authAlgorithm, func() string { return unsigned(t, map[string]any{"alg": "None"}, claims(ok)) }},
		{"alg none with a signature", authAlgorithm, func() string {
			return unsigned(t, map[string]any{"alg": "none"}, claims(ok)) + "c2ln"
		}},
		{"HS384 (not configured)", authAlgorithm, func() string { return sign(t, jwt.SigningMethodHS384, unitSecret, "", claims(ok)) }},
		{"RS512 (not configured)", authAlgorithm, func() string { return sign(t, jwt.SigningMethodRS512, k.rsaA, "rsa-a", claims(ok)) }},
		{"crit header", authAlgorithm, func() string {
			tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(ok))
			tok.Header["crit"] = []string{"exp"}
			s, _ := tok.SignedString(unitSecret)
			return s
		}},
		{"kid not a string", authAlgorithm, func() string {
			tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims(ok))
			tok.Header["kid"] = 7
			s, _ := tok.SignedString(k.rsaA)
			return s
		}},
		{"garbage", authMalformed, func() string { return "not.a.token" }},
		{"two segments", authMalformed, func() string { return "eyJhbGciOiJIUzI1NiJ9.e30" }},
		{"too long", authMalformed, func() string { return strings.Repeat("a", maxTokenBytes+1) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { wantRefused(t, v, tc.tok(), tc.reason) })
	}
}

// Algorithm confusion: an HS256 token whose HMAC key is the server's RSA
// public key (PEM or DER bytes, which an attacker has) must fail, whether
// or not HS256 is on.
func TestVerifierAlgorithmConfusion(t *testing.T) {
	t.Parallel()
	k := testKeys()
	pemBytes := pemPublic(t, &k.rsaA.PublicKey, "")
	der, _ := x509.MarshalPKIXPublicKey(&k.rsaA.PublicKey)
	file := writeFile(t, pemBytes)
	withHS := newVerifier(t, VerifierConfig{Secret: unitSecret, PublicKeyFile: file})
	withoutHS := newVerifier(t, VerifierConfig{PublicKeyFile: file})
	for _, key := range [][]byte{pemBytes, der, x509.MarshalPKCS1PublicKey(&k.rsaA.PublicKey)} {
		tok := sign(t, jwt.SigningMethodHS256, key, "", claims())
		wantRefused(t, withHS, tok, authSignature)
		wantRefused(t, withoutHS, tok, authAlgorithm)
	}
	// And the other way: RS256 with the HMAC secret is not even signable,
	// and an RS256 header over an HMAC signature fails.
	hs := strings.Split(sign(t, jwt.SigningMethodHS256, unitSecret, "", claims()), ".")
	rsHeader := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`))
	wantRefused(t, withHS, rsHeader+"."+hs[1]+"."+hs[2], authSignature)
	// EdDSA header, RSA key: the Ed25519 verifier gets no Ed25519 key.
	wantRefused(t, withoutHS, sign(t, jwt.SigningMethodEdDSA, k.ed, "", claims()), authUnknownKey)
	// HS256-only edge: an RS256 token, even with a valid signature, fails.
	hsOnly := newVerifier(t, VerifierConfig{Secret: unitSecret})
	wantRefused(t, hsOnly, sign(t, jwt.SigningMethodRS256, k.rsaA, "", claims()), authAlgorithm)
}

func TestVerifierConfigErrors(t *testing.T) {
	t.Parallel()
	k := testKeys()
	priv, _ := x509.MarshalPKCS8PrivateKey(k.rsaA)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]VerifierConfig{
		"no keys":                 {},
		"missing PEM file":        {PublicKeyFile: filepath.Join(t.TempDir(), "none.pem")},
		"PEM without keys":        {PublicKeyFile: writeFile(t, []byte("hello"))},
		"PEM with a private key":  {PublicKeyFile: writeFile(t, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv}))},
		"PEM with a 1024-bit key": {PublicKeyFile: writeFile(t, pemPublic(t, &small.PublicKey, ""))},
		"JWKS URL not http":       {JWKSURL: "file:///etc/passwd"},
		"JWKS unreachable":        {JWKSURL: "http://127.0.0.1:1/jwks.json"},
	}
	for name, cfg := range cases {
		if _, err := NewVerifierFrom(cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// A JWKS of only unusable keys refuses every token: an error at start.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write(jwksDoc(t, jwkEntry{kid: "small", pub: &small.PublicKey}, jwkEntry{kid: "enc", pub: &k.rsaA.PublicKey, use: "enc"}))
	}))
	defer srv.Close()
	if _, err := NewVerifierFrom(VerifierConfig{JWKSURL: srv.URL}); err == nil || !strings.Contains(err.Error(), "no usable") {
		t.Errorf("JWKS without usable keys: %v", err)
	}
}

type jwkEntry struct {
	kid string
	pub any
	use string
}

func jwksDoc(t testing.TB, keys ...jwkEntry) []byte {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	var out []map[string]string
	for _, k := range keys {
		m := map[string]string{"kid": k.kid}
		if k.use != "" {
			m["use"] = k.use
		}
		switch p := k.pub.(type) {
		case *rsa.PublicKey:
			m["kty"], m["alg"] = "RSA", "RS256"
			m["n"] = enc(p.N.Bytes())
			m["e"] = enc(big.NewInt(int64(p.E)).Bytes())
		case ed25519.PublicKey:
			m["kty"], m["crv"], m["alg"] = "OKP", "Ed25519", "EdDSA"
			m["x"] = enc(p)
		}
		out = append(out, m)
	}
	b, err := json.Marshal(map[string]any{"keys": out})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jwksServer serves a key set that the test can swap, and counts fetches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	doc     []byte
	fetches atomic.Int64
	down    atomic.Bool
}

func newJWKSServer(t testing.TB, keys ...jwkEntry) *jwksServer {
	s := &jwksServer{doc: jwksDoc(t, keys...)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.fetches.Add(1)
		if s.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(s.doc)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(t testing.TB, keys ...jwkEntry) {
	s.mu.Lock()
	s.doc = jwksDoc(t, keys...)
	s.mu.Unlock()
}

// Key rotation through a JWKS: a new kid is fetched at once, a removed key
// stops working after the refresh interval, an outage keeps the last good
// keys, and a flood of unknown kids costs a bounded number of fetches.
func TestVerifierJWKSRotation(t *testing.T) {
	t.Parallel()
	k := testKeys()
	srv := newJWKSServer(t, jwkEntry{kid: "a", pub: &k.rsaA.PublicKey}, jwkEntry{kid: "ed", pub: k.ed.Public()})
	const refresh = 300 * time.Millisecond
	v := newVerifier(t, VerifierConfig{JWKSURL: srv.URL, JWKSRefresh: refresh})
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches at start, want 1", n)
	}
	tokA := sign(t, jwt.SigningMethodRS256, k.rsaA, "a", claims())
	tokB := sign(t, jwt.SigningMethodRS256, k.rsaB, "b", claims())
	wantAccepted(t, v, tokA)
	wantAccepted(t, v, sign(t, jwt.SigningMethodEdDSA, k.ed, "ed", claims()))
	// Key b is not published yet.
	wantRefused(t, v, tokB, authUnknownKey)

	// The issuer publishes b next to a, then signs with b: the unknown
	// kid makes the verifier fetch at once (after the minimum spacing).
	srv.set(t, jwkEntry{kid: "a", pub: &k.rsaA.PublicKey}, jwkEntry{kid: "b", pub: &k.rsaB.PublicKey})
	time.Sleep(refresh)
	wantAccepted(t, v, tokB)
	wantAccepted(t, v, tokA)

	// The issuer retires a: once the cached set is older than the
	// refresh interval it is fetched again and a's tokens fail.
	srv.set(t, jwkEntry{kid: "b", pub: &k.rsaB.PublicKey})
	time.Sleep(refresh + 50*time.Millisecond)
	wantRefused(t, v, tokA, authUnknownKey)
	wantAccepted(t, v, tokB)

	// The JWKS endpoint goes down: the last good keys stay in use.
	srv.down.Store(true)
	time.Sleep(refresh + 50*time.Millisecond)
	wantAccepted(t, v, tokB)
	srv.down.Store(false)

	// A flood of made-up kids: fetches are spaced by the refresh interval
	// (here under jwksMinRefetch), not one per token.
	before := srv.fetches.Load()
	start := time.Now()
	for i := 0; i < 200; i++ {
		wantRefused(t, v, sign(t, jwt.SigningMethodRS256, k.rsaA, "made-up-"+itoa(i), claims()), authUnknownKey)
	}
	spent := time.Since(start)
	if n, most := srv.fetches.Load()-before, int64(spent/refresh)+2; n > most {
		t.Fatalf("%d fetches for 200 unknown kids in %s, want at most %d", n, spent, most)
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// Mint's tokens pass the verifier; issuer and audience are carried.
func TestMintRoundTrip(t *testing.T) {
	t.Parallel()
	now := time.Now()
	tok, err := mint(unitSecret, "ann", []string{"room-*"}, time.Hour, now, "iss", "aud")
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, VerifierConfig{Secret: unitSecret, Issuer: "iss", Audience: "aud", MaxLifetime: time.Hour})
	wantAccepted(t, v, tok)
	if _, err := Mint(unitSecret, "bad user", nil, time.Hour, now); err == nil {
		t.Fatal("minted for an invalid user")
	}
}

// writeAtomic replaces the file at p the way a secret mount or a careful
// operator does: a new file renamed over the old one.
func writeAtomic(t testing.TB, p string, b []byte) {
	t.Helper()
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}

// auth.public_keys_file is read again when it changes: a key added is
// taken at once by the first token naming its kid, a key removed stops
// working within the check interval, and a file that is broken or gone
// keeps the keys that were good.
func TestVerifierPEMReload(t *testing.T) {
	t.Parallel()
	k := testKeys()
	const every = 300 * time.Millisecond
	file := writeFile(t, pemPublic(t, &k.rsaA.PublicKey, "a"))
	v := newVerifier(t, VerifierConfig{PublicKeyFile: file, PublicKeysCheck: every})
	tokA := sign(t, jwt.SigningMethodRS256, k.rsaA, "a", claims())
	tokB := sign(t, jwt.SigningMethodRS256, k.rsaB, "b", claims())
	tokEd := sign(t, jwt.SigningMethodEdDSA, k.ed, "", claims())
	wantAccepted(t, v, tokA)
	wantRefused(t, v, tokB, authUnknownKey)

	// Rotation, step 1: b is published next to a; its first token reads
	// the file (after the minimum spacing since the last read).
	writeAtomic(t, file, append(pemPublic(t, &k.rsaA.PublicKey, "a"), pemPublic(t, &k.rsaB.PublicKey, "b")...))
	time.Sleep(every)
	wantAccepted(t, v, tokB)
	wantAccepted(t, v, tokA)

	// Step 2: a is retired. Its tokens fail once the file is looked at
	// again, without any unknown kid to prompt it.
	writeAtomic(t, file, pemPublic(t, &k.rsaB.PublicKey, "b"))
	deadline := time.Now().Add(5 * every)
	for {
		_, err := v.Verify(tokA)
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the removed key still verifies %s after the file changed", 5*every)
		}
		time.Sleep(every / 10)
	}
	wantRefused(t, v, tokA, authUnknownKey)
	wantAccepted(t, v, tokB)

	// A kid-less Ed25519 key rewritten in place (no rename) is found too.
	if err := os.WriteFile(file, append(pemPublic(t, &k.rsaB.PublicKey, "b"), pemPublic(t, k.ed.Public(), "")...), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(every + 50*time.Millisecond)
	wantAccepted(t, v, tokEd)

	// Half-written, then gone: the last good keys stay.
	writeAtomic(t, file, []byte("-----BEGIN PUBLIC KEY-----\nnot base64"))
	time.Sleep(every + 50*time.Millisecond)
	wantAccepted(t, v, tokB)
	wantAccepted(t, v, tokEd)
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	time.Sleep(every + 50*time.Millisecond)
	wantAccepted(t, v, tokB)
}

// Tokens with made-up kids cannot make the verifier read the key file
// more than once per pemMinRecheck.
func TestVerifierPEMUnknownKidsBounded(t *testing.T) {
	t.Parallel()
	k := testKeys()
	file := writeFile(t, pemPublic(t, &k.rsaA.PublicKey, "a"))
	v := newVerifier(t, VerifierConfig{PublicKeyFile: file, PublicKeysCheck: time.Hour})
	var checks []time.Time
	last := v.pem.lastCheck()
	start := time.Now()
	for i := 0; time.Since(start) < 1500*time.Millisecond; i++ {
		wantRefused(t, v, sign(t, jwt.SigningMethodRS256, k.rsaA, "made-up-"+itoa(i), claims()), authUnknownKey)
		if c := v.pem.lastCheck(); !c.Equal(last) {
			checks = append(checks, c)
			last = c
		}
	}
	if len(checks) == 0 || len(checks) > 2 {
		t.Fatalf("%d reads of the key file in 1.5 s of unknown kids, want 1 or 2 (at most one per %s)", len(checks), pemMinRecheck)
	}
}

// lastCheck is when the key file was last read.
func (p *pemKeys) lastCheck() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.checked
}
