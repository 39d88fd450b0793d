package edge

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writeCert writes a self-signed certificate for 127.0.0.1 with common
// name cn to certFile and keyFile.
func writeCert(t testing.TB, certFile, keyFile, cn string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A renewed certificate is served without a restart; a broken renewal
// keeps the previous one.
func TestCertReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeCert(t, cf, kf, "first")
	r, err := newCertReloader(cf, kf, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	cn := func() string {
		c, err := r.get(nil)
		if err != nil {
			t.Fatal(err)
		}
		x, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return x.Subject.CommonName
	}
	if got := cn(); got != "first" {
		t.Fatalf("serving %q", got)
	}
	writeCert(t, cf, kf, "second")
	future := time.Now().Add(time.Minute)
	_ = os.Chtimes(cf, future, future)
	if got := cn(); got != "first" {
		t.Fatalf("reloaded before the check interval: %q", got)
	}
	r.mu.Lock()
	r.checked = time.Time{}
	r.mu.Unlock()
	if got := cn(); got != "second" {
		t.Fatalf("after renewal serving %q, want second", got)
	}
	// A half-written renewal (key missing) keeps the working pair.
	if err := os.WriteFile(kf, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	later := future.Add(time.Minute)
	_ = os.Chtimes(kf, later, later)
	r.mu.Lock()
	r.checked = time.Time{}
	r.mu.Unlock()
	if got := cn(); got != "second" {
		t.Fatalf("after a broken renewal serving %q, want second", got)
	}
	if _, err := newCertReloader(cf, filepath.Join(dir, "none.pem"), slog.Default()); err == nil {
		t.Fatal("a missing key file was accepted")
	}
}
