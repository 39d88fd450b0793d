package edge

import (
	"context"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	// DefaultJWKSRefresh is how old a fetched key set may get.
	DefaultJWKSRefresh = 5 * time.Minute
	// jwksMaxBytes and jwksMaxKeys bound what one fetch may hold.
	jwksMaxBytes = 1 << 20
	jwksMaxKeys  = 100
	// jwksMinRefetch bounds fetches caused by unknown kids: a flood of
	// tokens with made-up kids costs at most one fetch per this long.
	jwksMinRefetch = 10 * time.Second
	jwksTimeout    = 5 * time.Second
)

// jwksCache holds the keys of a JWKS URL. Readers take the current set
// without waiting; one fetch runs at a time (fetchMu), by the caller that
// needs it, so the cache owns no goroutine.
type jwksCache struct {
	url        string
	refresh    time.Duration
	minRefetch time.Duration
	client     *http.Client
	log        *slog.Logger

	mu      sync.RWMutex
	keys    []publicKey
	fetched time.Time // last successful fetch

	fetchMu sync.Mutex
	tried   time.Time // last fetch attempt; guarded by fetchMu
}

func newJWKSCache(cfg VerifierConfig) (*jwksCache, error) {
	u, err := url.Parse(cfg.JWKSURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("auth.jwks_url %q: want an http(s) URL", cfg.JWKSURL)
	}
	j := &jwksCache{
		url:     cfg.JWKSURL,
		refresh: cfg.JWKSRefresh,
		client:  cfg.HTTPClient,
		log:     cfg.Logger,
	}
	if j.refresh <= 0 {
		j.refresh = DefaultJWKSRefresh
	}
	j.minRefetch = min(jwksMinRefetch, j.refresh)
	if j.client == nil {
		j.client = &http.Client{Timeout: jwksTimeout}
	}
	j.fetchMu.Lock()
	defer j.fetchMu.Unlock()
	if err := j.fetchLocked(); err != nil {
		return nil, fmt.Errorf("auth.jwks_url: %w", err)
	}
	return j, nil
}

// current returns the key set, fetching it again first when it is older
// than the refresh interval, unless another caller is already fetching
// (then the set at hand is used).
func (j *jwksCache) current() []publicKey {
	j.mu.RLock()
	keys, stale := j.keys, time.Since(j.fetched) > j.refresh
	j.mu.RUnlock()
	if !stale || !j.fetchMu.TryLock() {
		return keys
	}
	defer j.fetchMu.Unlock()
	if time.Since(j.tried) >= j.minRefetch {
		if err := j.fetchLocked(); err != nil {
			j.log.Warn("JWKS refresh failed; keeping the previous keys", "url", j.url, "err", err)
		}
	}
	j.mu.RLock()
	defer j.mu.RUnlock()
	return j.keys
}

// refetch fetches the set now, unless it was tried within minRefetch,
// and returns it.
func (j *jwksCache) refetch() []publicKey {
	j.fetchMu.Lock()
	if time.Since(j.tried) >= j.minRefetch {
		if err := j.fetchLocked(); err != nil {
			j.log.Warn("JWKS fetch for an unknown kid failed; keeping the previous keys", "url", j.url, "err", err)
		}
	}
	j.fetchMu.Unlock()
	j.mu.RLock()
	defer j.mu.RUnlock()
	return j.keys
}

func (j *jwksCache) fetchLocked() error {
	j.tried = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), jwksTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := j.client.Do(req)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", j.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch %s: HTTP %s", j.url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, jwksMaxBytes+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", j.url, err)
	}
	if len(b) > jwksMaxBytes {
		return fmt.Errorf("%s: key set over %d bytes", j.url, jwksMaxBytes)
	}
	keys, skipped, err := parseJWKS(b)
	if err != nil {
		return fmt.Errorf("%s: %w", j.url, err)
	}
	for _, s := range skipped {
		j.log.Debug("JWKS key skipped", "url", j.url, "reason", s)
	}
	j.mu.Lock()
	j.keys, j.fetched = keys, time.Now()
	j.mu.Unlock()
	return nil
}

type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	// RSA
	N string `json:"n"`
	E string `json:"e"`
	// OKP
	Crv string `json:"crv"`
	X   string `json:"x"`
}

// parseJWKS returns the usable signature keys of a JWKS document (RSA for
// RS256, OKP Ed25519 for EdDSA) and why the others were skipped. A set with
// no usable key is an error: it would refuse every token.
func parseJWKS(b []byte) ([]publicKey, []string, error) {
	var doc struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, nil, fmt.Errorf("not a JWKS document: %w", err)
	}
	if len(doc.Keys) > jwksMaxKeys {
		return nil, nil, fmt.Errorf("%d keys, at most %d", len(doc.Keys), jwksMaxKeys)
	}
	var keys []publicKey
	var skipped []string
	for _, k := range doc.Keys {
		pk, err := k.publicKey()
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("kid %q: %v", k.Kid, err))
			continue
		}
		keys = append(keys, pk)
	}
	if len(keys) == 0 {
		return nil, skipped, fmt.Errorf("no usable RS256 or EdDSA signature key (skipped: %s)", strings.Join(skipped, "; "))
	}
	return keys, skipped, nil
}

func (k jwk) publicKey() (publicKey, error) {
	if k.Use != "" && k.Use != "sig" {
		return publicKey{}, fmt.Errorf("use %q is not sig", k.Use)
	}
	switch k.Kty {
	case "RSA":
		if k.Alg != "" && k.Alg != jwt.SigningMethodRS256.Alg() {
			return publicKey{}, fmt.Errorf("alg %q is not RS256", k.Alg)
		}
		n, err := b64Int(k.N)
		if err != nil {
			return publicKey{}, fmt.Errorf("n: %w", err)
		}
		e, err := b64Int(k.E)
		if err != nil || !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
			return publicKey{}, errors.New("bad exponent e")
		}
		return newPublicKey(k.Kid, &rsa.PublicKey{N: n, E: int(e.Int64())})
	case "OKP":
		if k.Crv != "Ed25519" {
			return publicKey{}, fmt.Errorf("crv %q is not Ed25519", k.Crv)
		}
		if k.Alg != "" && k.Alg != jwt.SigningMethodEdDSA.Alg() && k.Alg != "Ed25519" {
			return publicKey{}, fmt.Errorf("alg %q is not EdDSA", k.Alg)
		}
		x, err := b64(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return publicKey{}, errors.New("bad Ed25519 key x")
		}
		return newPublicKey(k.Kid, ed25519.PublicKey(x))
	}
	return publicKey{}, fmt.Errorf("kty %q is not supported (RSA, OKP)", k.Kty)
}

func b64(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

func b64Int(s string) (*big.Int, error) {
	b, err := b64(s)
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, errors.New("empty")
	}
	return new(big.Int).SetBytes(b), nil
}
