package edge

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limits: token buckets (golang.org/x/time/rate) per connection, per user
// and per client IP, and counts of sessions and subscriptions. A bucket of
// R per second holds rateBurst seconds' worth (bytes: at least one
// largest message), so a client may burst briefly above its rate. Zero
// turns a limit off.
//
// Where each is checked:
//   - upgrade (serveWS): connections per IP, new connections per IP per
//     second: HTTP 429 with Retry-After before any WebSocket work;
//   - hello: sessions per user: error rate_limited, close 4408;
//   - every message and frame: bytes/s and frames/s of the connection and
//     of the user (summed over the user's sessions on this edge): error
//     rate_limited, the frame is dropped; a connection refused
//     edge.max_rate_limited times without a second free of refusals is
//     closed with 4408;
//   - subscribe and presence: subscriptions per session: error
//     rate_limited, nothing else happens.

// rateBurst is how many seconds of its rate a bucket holds.
const rateBurst = 2

// Reasons of rate_limited errors (their "reason" field) and the label
// values of causeway_edge_limited_total.
const (
	limitConnFrames    = "conn_frames"
	limitConnBytes     = "conn_bytes"
	limitUserFrames    = "user_frames"
	limitUserBytes     = "user_bytes"
	limitSessions      = "sessions"
	limitSubscriptions = "subscriptions"
	// limitBody is the reason of a too_large send body (edge.max_body_bytes).
	limitBody = "body"
)

var limitReasons = []string{limitConnFrames, limitConnBytes, limitUserFrames, limitUserBytes, limitSessions, limitSubscriptions, limitBody}

// Reasons an upgrade is refused: label values of
// causeway_edge_upgrades_refused_total.
const (
	refuseOrigin   = "origin"
	refuseIPConns  = "ip_conns"
	refuseIPRate   = "ip_rate"
	refuseDraining = "draining"
	// upgraded, then closed with 1002: no causeway.v1 subprotocol
	refuseSubprotocol = "subprotocol"
)

var refuseReasons = []string{refuseOrigin, refuseIPConns, refuseIPRate, refuseDraining, refuseSubprotocol}

// newBucket returns a limiter of perSec with rateBurst seconds of burst,
// at least minBurst; nil (no limit) when perSec is 0.
func newBucket(perSec, minBurst int) *rate.Limiter {
	if perSec <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(perSec), max(rateBurst*perSec, minBurst))
}

func allow(l *rate.Limiter, now time.Time, n int) bool {
	return l == nil || l.AllowN(now, n)
}

// userState is what an edge keeps per user with a session on it.
type userState struct {
	sessions int
	frames   *rate.Limiter
	bytes    *rate.Limiter
}

// userTable counts sessions per user and holds their shared buckets; an
// entry lives while the user has a session on this edge.
type userTable struct {
	mu    sync.Mutex
	users map[string]*userState
}

// acquire registers one more session of user, or reports false when the
// user already has max (0: no limit).
func (t *userTable) acquire(user string, max int, mk func() *userState) (*userState, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.users[user]
	if u == nil {
		u = mk()
		t.users[user] = u
	}
	if max > 0 && u.sessions >= max {
		return nil, false
	}
	u.sessions++
	return u, true
}

func (t *userTable) release(user string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if u := t.users[user]; u != nil {
		if u.sessions--; u.sessions <= 0 {
			delete(t.users, user)
		}
	}
}

// ipTable counts open connections and meters new ones per client
// address (IPv6 per /64: one host usually holds a whole /64).
type ipTable struct {
	maxConns int
	perSec   int

	mu        sync.Mutex
	ips       map[netip.Prefix]*ipState
	lastSweep time.Time
}

type ipState struct {
	conns int
	dials *rate.Limiter
}

// ipSweepEvery bounds how often idle entries are dropped.
const ipSweepEvery = 10 * time.Second

// admit counts a new connection from ip, or returns why it is refused.
func (t *ipTable) admit(ip netip.Prefix, now time.Time) (string, bool) {
	if t.maxConns <= 0 && t.perSec <= 0 {
		return "", true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.lastSweep) > ipSweepEvery {
		t.sweep(now)
	}
	s := t.ips[ip]
	if s == nil {
		s = &ipState{dials: newBucket(t.perSec, 1)}
		t.ips[ip] = s
	}
	if t.maxConns > 0 && s.conns >= t.maxConns {
		return refuseIPConns, false
	}
	if !allow(s.dials, now, 1) {
		return refuseIPRate, false
	}
	s.conns++
	return "", true
}

func (t *ipTable) release(ip netip.Prefix) {
	if t.maxConns <= 0 && t.perSec <= 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.ips[ip]; s != nil {
		s.conns--
	}
}

// sweep drops addresses without connections whose bucket has refilled:
// forgetting them changes nothing.
func (t *ipTable) sweep(now time.Time) {
	t.lastSweep = now
	for ip, s := range t.ips {
		if s.conns <= 0 && (s.dials == nil || s.dials.TokensAt(now) >= float64(s.dials.Burst())) {
			delete(t.ips, ip)
		}
	}
}

// clientAddr is the address limits are counted against: the peer, or,
// when the peer is a trusted proxy, the nearest address in
// X-Forwarded-For that is not one.
func clientAddr(r *http.Request, trusted []netip.Prefix) netip.Addr {
	ip := peerIP(r.RemoteAddr)
	if ip.IsValid() && inPrefixes(ip, trusted) {
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			h, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break // a malformed hop: trust nothing before it
			}
			ip = h.Unmap()
			if !inPrefixes(ip, trusted) {
				break
			}
		}
	}
	return ip
}

// ipKey is what an address is counted as: itself, or its /64 for IPv6
// (one host usually holds a whole /64).
func ipKey(ip netip.Addr) netip.Prefix {
	if !ip.IsValid() {
		return netip.Prefix{}
	}
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

func peerIP(remote string) netip.Addr {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return ip.Unmap()
}

func inPrefixes(ip netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// parsePrefixes reads CIDRs or single addresses.
func parsePrefixes(ss []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range ss {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, err
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// originAllowed is coder/websocket's Origin check (which Accept repeats),
// done first so a refusal is counted: no Origin (not a browser) passes,
// the request's own host passes, else the Origin's host (or
// scheme://host for a pattern with "://") must match a pattern.
func originAllowed(r *http.Request, patterns []string) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := parseOrigin(origin)
	if err != nil {
		return false
	}
	if strings.EqualFold(r.Host, u.host) {
		return true
	}
	for _, p := range patterns {
		if p == "*" {
			return true
		}
		target := u.host
		if strings.Contains(p, "://") {
			target = u.scheme + "://" + u.host
		}
		if ok, err := matchLower(p, target); err == nil && ok {
			return true
		}
	}
	return false
}

type originURL struct{ scheme, host string }

func parseOrigin(s string) (originURL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return originURL{}, err
	}
	return originURL{scheme: u.Scheme, host: u.Host}, nil
}

func matchLower(pattern, s string) (bool, error) {
	return path.Match(strings.ToLower(pattern), strings.ToLower(s))
}
