package edge

import (
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Claims are the token claims of PROTOCOL.md.
type Claims struct {
	jwt.RegisteredClaims
	// Groups are glob patterns (path.Match syntax) of joinable group IDs.
	Groups []string `json:"groups"`
}

// Identity is an authenticated user.
type Identity struct {
	User    string
	Groups  []string
	Expires time.Time
}

// MayJoin reports whether a token pattern matches group.
func (id Identity) MayJoin(group string) bool {
	for _, p := range id.Groups {
		if ok, err := path.Match(p, group); err == nil && ok {
			return true
		}
	}
	return false
}

// Token verification limits.
const (
	// MinSecretBytes is the shortest HS256 secret an edge accepts outside
	// `causeway dev` (RFC 7518 3.2: a key at least as long as the hash).
	MinSecretBytes = 32
	// maxTokenBytes bounds what is parsed at all.
	maxTokenBytes = 8192
	// tokenLeeway absorbs clock skew in exp, nbf and iat.
	tokenLeeway = 5 * time.Second
	// minRSABits: smaller RSA keys are refused, from the PEM file and
	// from the JWKS alike.
	minRSABits = 2048
)

// VerifierConfig says which tokens a Verifier accepts. At least one key
// source is needed: Secret (HS256), PublicKeyFile or JWKSURL (RS256,
// EdDSA).
type VerifierConfig struct {
	// Secret verifies HS256 tokens; empty turns HS256 off.
	Secret []byte
	// PublicKeyFile is a PEM file of public keys ("PUBLIC KEY", "RSA
	// PUBLIC KEY" or "CERTIFICATE" blocks; RSA of at least 2048 bits, or
	// Ed25519). A block's "kid" header names its key; a key without one
	// is tried for every token of its algorithm. The file is read again
	// when it changes (see PublicKeysCheck), so keys rotate without a
	// restart.
	PublicKeyFile string
	// PublicKeysCheck is how often PublicKeyFile is looked at for changes
	// (default DefaultPublicKeysCheck); a token naming an unknown kid
	// looks at once, at most once a second.
	PublicKeysCheck time.Duration
	// JWKSURL is a JSON Web Key Set of RS256 and EdDSA keys, selected by
	// the token's kid. It is fetched at start, again when older than
	// JWKSRefresh, and at once when a token names an unknown kid (at
	// most once per min(JWKSRefresh, 10s)), so rotated keys are picked up
	// without a restart; if a fetch fails the last good set stays.
	JWKSURL     string
	JWKSRefresh time.Duration
	// Issuer and Audience, when set, must match the token's iss and be
	// one of its aud.
	Issuer   string
	Audience string
	// MaxLifetime, when positive, bounds exp - iat (exp - now for a token
	// without iat): a stolen long-lived token is refused even if signed.
	MaxLifetime time.Duration
	// HTTPClient fetches the JWKS (default: a client with a 5 s timeout).
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// Verifier checks tokens: HS256 against a shared secret, RS256 and EdDSA
// against public keys. It is safe for concurrent use.
type Verifier struct {
	cfg     VerifierConfig
	parser  *jwt.Parser
	methods map[string]bool // algorithms accepted
	pem     *pemKeys        // nil without PublicKeyFile
	jwks    *jwksCache      // nil without JWKSURL
}

// publicKey is one verification key of an asymmetric algorithm.
type publicKey struct {
	kid string
	alg string // jwt alg: "RS256" or "EdDSA"
	key any    // *rsa.PublicKey or ed25519.PublicKey
}

// NewVerifier returns a verifier of HS256 tokens signed with secret.
func NewVerifier(secret []byte) (*Verifier, error) {
	return NewVerifierFrom(VerifierConfig{Secret: secret})
}

// NewVerifierFrom returns a verifier for cfg. It reads the PEM file and
// fetches the JWKS once, so a wrong path or URL fails here.
func NewVerifierFrom(cfg VerifierConfig) (*Verifier, error) {
	if len(cfg.Secret) == 0 && cfg.PublicKeyFile == "" && cfg.JWKSURL == "" {
		return nil, errors.New("no token keys: set auth.secret, auth.public_keys_file or auth.jwks_url")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	v := &Verifier{cfg: cfg}
	// Each algorithm is accepted only with a key of its own type:
	// "none" never, HS256 only with the shared secret (never with public
	// key bytes: algorithm confusion), RS256 only with RSA keys, EdDSA
	// only with Ed25519 keys.
	var methods []string
	if len(cfg.Secret) > 0 {
		methods = append(methods, jwt.SigningMethodHS256.Alg())
	}
	if cfg.PublicKeyFile != "" {
		p, err := newPEMKeys(cfg.PublicKeyFile, cfg.PublicKeysCheck, cfg.Logger)
		if err != nil {
			return nil, err
		}
		v.pem = p
	}
	if cfg.JWKSURL != "" {
		j, err := newJWKSCache(cfg)
		if err != nil {
			return nil, err
		}
		v.jwks = j
	}
	if cfg.PublicKeyFile != "" || cfg.JWKSURL != "" {
		methods = append(methods, jwt.SigningMethodRS256.Alg(), jwt.SigningMethodEdDSA.Alg())
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(tokenLeeway),
	}
	v.parser = jwt.NewParser(opts...)
	v.methods = make(map[string]bool)
	for _, m := range methods {
		v.methods[m] = true
	}
	return v, nil
}

// Token refusal reasons: the label values of
// causeway_edge_auth_failures_total, a fixed set.
const (
	authMalformed   = "malformed"
	authSignature   = "signature"
	authAlgorithm   = "algorithm"
	authUnknownKey  = "unknown_key"
	authExpired     = "expired"
	authNotYetValid = "not_yet_valid"
	authIssuer      = "issuer"
	authAudience    = "audience"
	authLifetime    = "lifetime"
	authClaims      = "claims"
	authOtherUser   = "other_user" // a refresh for another user
)

var authReasons = []string{authMalformed, authSignature, authAlgorithm, authUnknownKey, authExpired,
	authNotYetValid, authIssuer, authAudience, authLifetime, authClaims, authOtherUser}

// TokenError is why a token was refused. Reason is one of a fixed set of
// words (fit for a metrics label); the message never holds the token.
type TokenError struct {
	Reason string
	Err    error
}

func (e *TokenError) Error() string { return "token refused (" + e.Reason + "): " + e.Err.Error() }
func (e *TokenError) Unwrap() error { return e.Err }

var errUnknownKey = errors.New("no key for the token's alg and kid")

func refuse(reason string, err error) (Identity, error) {
	return Identity{}, &TokenError{Reason: reason, Err: err}
}

// Verify parses and checks a token. A refusal is a *TokenError.
func (v *Verifier) Verify(token string) (Identity, error) {
	if len(token) > maxTokenBytes {
		return refuse(authMalformed, fmt.Errorf("token longer than %d bytes", maxTokenBytes))
	}
	var c Claims
	t, err := v.parser.ParseWithClaims(token, &c, v.keyFor)
	if err != nil {
		reason := tokenReason(err)
		if t != nil && t.Method != nil && !v.methods[t.Method.Alg()] {
			reason = authAlgorithm // "none", or one without a key here
		}
		return refuse(reason, err)
	}
	// iss and aud are checked here rather than by the parser, so a
	// missing one is refused for the same reason as a wrong one.
	if iss := v.cfg.Issuer; iss != "" && c.Issuer != iss {
		return refuse(authIssuer, fmt.Errorf("iss %q is not %q", c.Issuer, iss))
	}
	if aud := v.cfg.Audience; aud != "" && !slices.Contains(c.Audience, aud) {
		return refuse(authAudience, fmt.Errorf("aud %q does not hold %q", []string(c.Audience), aud))
	}
	if !ValidUserID(c.Subject) {
		return refuse(authClaims, errors.New("sub is not a valid user ID"))
	}
	for _, p := range c.Groups {
		if _, err := path.Match(p, ""); err != nil {
			return refuse(authClaims, fmt.Errorf("group pattern %q: %w", p, err))
		}
	}
	exp := c.ExpiresAt.Time // required by the parser
	if m := v.cfg.MaxLifetime; m > 0 {
		from := time.Now()
		if c.IssuedAt != nil {
			from = c.IssuedAt.Time
		}
		if life := exp.Sub(from); life > m+tokenLeeway {
			return refuse(authLifetime, fmt.Errorf("lifetime %s is over the maximum %s", life.Round(time.Second), m))
		}
	}
	return Identity{User: c.Subject, Groups: c.Groups, Expires: exp}, nil
}

// tokenReason maps a parser error to a refusal reason.
func tokenReason(err error) string {
	switch {
	case errors.Is(err, errUnknownKey):
		return authUnknownKey
	case errors.Is(err, jwt.ErrTokenMalformed):
		return authMalformed
	case errors.Is(err, jwt.ErrTokenExpired):
		return authExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return authNotYetValid
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return authIssuer
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return authAudience
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return authSignature
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return authAlgorithm
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing), errors.Is(err, jwt.ErrTokenInvalidClaims):
		return authClaims
	}
	return authMalformed
}

// keyFor returns the keys that may have signed t: the shared secret for
// HS256, else the public keys of the token's algorithm matching its kid.
// The parser has already refused any algorithm not configured.
func (v *Verifier) keyFor(t *jwt.Token) (any, error) {
	if _, ok := t.Header["crit"]; ok {
		// RFC 7515 4.1.11: extensions we do not understand must fail.
		return nil, errors.New("crit header is not supported")
	}
	alg := t.Method.Alg()
	if alg == jwt.SigningMethodHS256.Alg() {
		return v.cfg.Secret, nil
	}
	var kid string
	if k, ok := t.Header["kid"]; ok {
		s, isStr := k.(string)
		if !isStr || s == "" || len(s) > 256 {
			return nil, errors.New("kid must be a non-empty string")
		}
		kid = s
	}
	keys := v.candidates(alg, kid, false)
	if len(keys) == 0 && (v.jwks != nil || v.pem != nil) {
		// A kid never seen: the issuer may have rotated its keys.
		keys = v.candidates(alg, kid, true)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w (alg %s, kid %q)", errUnknownKey, alg, kid)
	}
	return jwt.VerificationKeySet{Keys: keys}, nil
}

func (v *Verifier) candidates(alg, kid string, refetch bool) []jwt.VerificationKey {
	var out []jwt.VerificationKey
	add := func(ks []publicKey) {
		for _, k := range ks {
			// A named key matches only its kid; an unnamed one any.
			if k.alg == alg && (k.kid == "" || kid == "" || k.kid == kid) {
				out = append(out, k.key)
			}
		}
	}
	if v.pem != nil {
		if refetch {
			add(v.pem.recheck())
		} else {
			add(v.pem.current())
		}
	}
	if v.jwks != nil {
		if refetch {
			add(v.jwks.refetch())
		} else {
			add(v.jwks.current())
		}
	}
	return out
}

// parsePublicKeys reads every PEM block of b as a public key.
func parsePublicKeys(b []byte) ([]publicKey, error) {
	var out []publicKey
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		var pub any
		var err error
		switch blk.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(blk.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(blk.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(blk.Bytes); err == nil {
				pub = cert.PublicKey
			}
		default:
			return nil, fmt.Errorf("PEM block %q: want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE (never a private key)", blk.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("PEM block %q: %w", blk.Type, err)
		}
		k, err := newPublicKey(blk.Headers["kid"], pub)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM public key found")
	}
	return out, nil
}

func newPublicKey(kid string, pub any) (publicKey, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return publicKey{}, fmt.Errorf("RSA key %q has %d bits, want at least %d", kid, k.N.BitLen(), minRSABits)
		}
		return publicKey{kid: kid, alg: jwt.SigningMethodRS256.Alg(), key: k}, nil
	case ed25519.PublicKey:
		return publicKey{kid: kid, alg: jwt.SigningMethodEdDSA.Alg(), key: k}, nil
	}
	return publicKey{}, fmt.Errorf("key %q is a %T: want RSA or Ed25519", kid, pub)
}

// Mint signs an HS256 token for user with the given group patterns and
// lifetime.
func Mint(secret []byte, user string, groups []string, ttl time.Duration, now time.Time) (string, error) {
	return mint(secret, user, groups, ttl, now, "", "")
}

// MintFor is Mint with an issuer and audience (for edges configured with
// auth.issuer and auth.audience); empty ones are left out.
func MintFor(secret []byte, user string, groups []string, ttl time.Duration, now time.Time, iss, aud string) (string, error) {
	return mint(secret, user, groups, ttl, now, iss, aud)
}

func mint(secret []byte, user string, groups []string, ttl time.Duration, now time.Time, iss, aud string) (string, error) {
	if !ValidUserID(user) {
		return "", fmt.Errorf("user %q is not a valid user ID (1-128 of A-Z a-z 0-9 . _ - : @ +)", user)
	}
	if ttl <= 0 {
		return "", fmt.Errorf("ttl %s must be positive", ttl)
	}
	for _, p := range groups {
		if _, err := path.Match(p, ""); err != nil {
			return "", fmt.Errorf("group pattern %q: %w", p, err)
		}
	}
	c := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   user,
			Issuer:    iss,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		Groups: groups,
	}
	if aud != "" {
		c.Audience = jwt.ClaimStrings{aud}
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return s, nil
}

// DefaultPublicKeysCheck is how often auth.public_keys_file is looked at.
const DefaultPublicKeysCheck = 10 * time.Second

const (
	// pemMinRecheck bounds the reads caused by unknown kids: a flood of
	// tokens with made-up kids reads the file at most once per this long.
	pemMinRecheck = time.Second
	// pemMaxBytes bounds the key file.
	pemMaxBytes = 1 << 20
)

// pemKeys holds the keys of a PEM file and reads it again when it
// changed: checked at most once per every, by the verification that finds
// it due, and at once (at most once per pemMinRecheck) for a token naming
// an unknown kid. A file that cannot be read or holds no valid key keeps
// the previous keys in use: a half-written file must not lock everyone
// out. Like jwksCache, it owns no goroutine.
type pemKeys struct {
	path  string
	every time.Duration
	log   *slog.Logger

	keys atomic.Pointer[[]publicKey]

	mu      sync.Mutex // one reader of the file at a time
	sum     [sha256.Size]byte
	checked time.Time
	bad     [sha256.Size]byte // content last refused, so it is logged once
}

func newPEMKeys(path string, every time.Duration, log *slog.Logger) (*pemKeys, error) {
	if every <= 0 {
		every = DefaultPublicKeysCheck
	}
	p := &pemKeys{path: path, every: every, log: log}
	b, err := readPEMFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth.public_keys_file: %w", err)
	}
	keys, err := parsePublicKeys(b)
	if err != nil {
		return nil, fmt.Errorf("auth.public_keys_file %s: %w", path, err)
	}
	p.keys.Store(&keys)
	p.sum, p.checked = sha256.Sum256(b), time.Now()
	return p, nil
}

func readPEMFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, pemMaxBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > pemMaxBytes {
		return nil, fmt.Errorf("%s: over %d bytes", path, pemMaxBytes)
	}
	return b, nil
}

// current returns the keys, reading the file first when a check is due,
// unless another verification is reading it (then the keys at hand serve).
func (p *pemKeys) current() []publicKey {
	if p.mu.TryLock() {
		if time.Since(p.checked) >= p.every {
			p.reloadLocked()
		}
		p.mu.Unlock()
	}
	return *p.keys.Load()
}

// recheck reads the file now, unless it was read within pemMinRecheck,
// and returns the keys.
func (p *pemKeys) recheck() []publicKey {
	p.mu.Lock()
	if time.Since(p.checked) >= min(pemMinRecheck, p.every) {
		p.reloadLocked()
	}
	p.mu.Unlock()
	return *p.keys.Load()
}

// reloadLocked reads the file and swaps in its keys if its content
// changed and parses; the caller holds mu.
func (p *pemKeys) reloadLocked() {
	p.checked = time.Now()
	b, err := readPEMFile(p.path)
	if err != nil {
		p.log.Warn("auth.public_keys_file unreadable; keeping the previous keys", "file", p.path, "err", err)
		return
	}
	sum := sha256.Sum256(b)
	if sum == p.sum {
		return
	}
	keys, err := parsePublicKeys(b)
	if err != nil {
		if sum != p.bad {
			p.bad = sum
			p.log.Warn("auth.public_keys_file changed but holds no valid key set; keeping the previous keys", "file", p.path, "err", err)
		}
		return
	}
	p.keys.Store(&keys)
	p.sum = sum
	p.log.Info("auth.public_keys_file reloaded", "file", p.path, "keys", len(keys))
}
