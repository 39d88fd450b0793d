// Package web is Causeway's browser side: causeway.js, a JavaScript client
// library for docs/PROTOCOL.md (an ES module with JSDoc types and
// TypeScript declarations, used as is, with no build step), and a demo page
// (group chat, member list, presence, typing, read receipts and a 1:1
// WebRTC call through `signal` frames) that every edge serves at /.
//
// The files are embedded in the binary, so an edge needs nothing beside
// itself to serve them.
//
// Concurrency: the handlers are safe for concurrent use; the embedded files
// never change.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// files holds the page and the library. A package-level variable only
// because //go:embed allows nothing else; it is read-only.
//
//go:embed index.html app.js style.css causeway.js causeway.d.ts
var files embed.FS

// contentType is explicit rather than from mime.TypeByExtension, which
// reads the host's /etc/mime.types: there ".ts" is often video/mp2t, and a
// module script served with a wrong type is refused by the browser.
func contentType(name string) string {
	switch {
	case strings.HasSuffix(name, ".html"):
		return "text/html; charset=utf-8"
	case strings.HasSuffix(name, ".d.ts"):
		return "application/typescript; charset=utf-8"
	case strings.HasSuffix(name, ".js"):
		return "text/javascript; charset=utf-8"
	case strings.HasSuffix(name, ".css"):
		return "text/css; charset=utf-8"
	}
	return "application/octet-stream"
}

// csp keeps the page to its own scripts and styles. connect-src allows any
// ws:/wss: URL because the page may be pointed at other edges (?edges=);
// media-src allows the MediaStreams of a call.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"media-src 'self' blob: mediastream:; connect-src 'self' ws: wss:; object-src 'none'; " +
	"base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

type file struct {
	body  []byte
	ctype string
	etag  string
}

// Handler serves the embedded files: / is index.html, /causeway.js the
// library, /causeway.d.ts its types. Anything else is 404.
func Handler() http.Handler {
	entries, err := files.ReadDir(".")
	if err != nil {
		// The embedded directory is part of the binary; reading it
		// cannot fail.
		panic("web: read embedded files: " + err.Error())
	}
	byPath := make(map[string]file, len(entries)+1)
	for _, e := range entries {
		b, err := files.ReadFile(e.Name())
		if err != nil {
			panic("web: read embedded " + e.Name() + ": " + err.Error())
		}
		sum := sha256.Sum256(b)
		byPath["/"+e.Name()] = file{
			body:  b,
			ctype: contentType(e.Name()),
			// The files change only with the binary: their hash is a
			// strong validator, so a reload costs a 304.
			etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`,
		}
	}
	byPath["/"] = byPath["/index.html"]
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := byPath[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", f.ctype)
		h.Set("ETag", f.etag)
		// Revalidate every time (cheap with the ETag): after an edge
		// upgrade, a cached old page must not talk to a new server.
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if f.ctype == contentType(".html") {
			h.Set("Content-Security-Policy", csp)
		}
		if r.URL.Path == "/causeway.js" {
			// Lets Deno and similar tools find the types of a URL import.
			h.Set("X-TypeScript-Types", "/causeway.d.ts")
		}
		http.ServeContent(w, r, r.URL.Path, time.Time{}, bytes.NewReader(f.body))
	})
}

// MintFunc mints a token for user, returning it with the group patterns it
// allows and when it expires.
type MintFunc func(user string) (token string, groups []string, expires time.Time, err error)

// DevToken is the JSON answer of GET /dev/token.
type DevToken struct {
	Token  string   `json:"token"`
	User   string   `json:"user"`
	Groups []string `json:"groups"`
	// ExpiresMs is the token's expiry, unix milliseconds.
	ExpiresMs int64 `json:"expires_ms"`
}

// DevTokenHandler serves GET /dev/token?user=NAME with mint, and HEAD
// /dev/token with 200 and no token, to tell it is on. With a nil
// mint (dev tokens off, the default everywhere but `causeway dev`) it
// answers 404, exactly as for a path that does not exist, so a production
// edge does not even reveal the endpoint.
//
// It sets no CORS header: another site's script cannot read a token, even
// from a dev edge.
func DevTokenHandler(mint MintFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if mint == nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if r.Method == http.MethodHead {
			// The demo page asks whether the endpoint is on before it
			// decides between signing in by name and asking for a token.
			w.WriteHeader(http.StatusOK)
			return
		}
		user := r.URL.Query().Get("user")
		if user == "" {
			http.Error(w, "dev token: the query needs ?user=NAME", http.StatusBadRequest)
			return
		}
		tok, groups, exp, err := mint(user)
		if err != nil {
			// Mint refuses only bad input (a malformed user ID).
			http.Error(w, "dev token: "+err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(DevToken{Token: tok, User: user, Groups: groups, ExpiresMs: exp.UnixMilli()})
	})
}
