package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

// causeway token sets iss and aud from flags or auth.issuer/auth.audience,
// so edges configured with them accept its tokens.
func TestTokenIssuerAudience(t *testing.T) {
	t.Setenv("CAUSEWAY_AUTH_SECRET", e2eSecret)
	t.Setenv("CAUSEWAY_AUTH_AUDIENCE", "causeway-edges")
	var out bytes.Buffer
	root := newRoot()
	root.SetOut(&out)
	root.SetArgs([]string{"token", "--user", "ann", "--groups", "room-*", "--issuer", "https://id.example"})
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(strings.TrimSpace(out.String()), ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", out.String())
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Iss string `json:"iss"`
		Aud any    `json:"aud"`
		Sub string `json:"sub"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	aud, _ := json.Marshal(claims.Aud)
	if claims.Iss != "https://id.example" || !strings.Contains(string(aud), "causeway-edges") || claims.Sub != "ann" {
		t.Fatalf("claims %s", payload)
	}
}
