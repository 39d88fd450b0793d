package edge

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certCheckEvery bounds how often the certificate files are looked at.
const certCheckEvery = time.Minute

// certReloader serves the certificate of a cert/key file pair and reads
// them again, at most once per certCheckEvery, when either file changed:
// a renewed certificate is picked up without a restart. A pair that fails
// to load keeps the previous one in use.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	mod     time.Time // latest modification time of the pair when loaded
	checked time.Time
}

func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := r.load(); err != nil {
		return nil, fmt.Errorf("edge.tls_cert/edge.tls_key: %w", err)
	}
	return r, nil
}

func (r *certReloader) modTime() (time.Time, error) {
	var latest time.Time
	for _, f := range []string{r.certFile, r.keyFile} {
		st, err := os.Stat(f)
		if err != nil {
			return time.Time{}, err
		}
		if st.ModTime().After(latest) {
			latest = st.ModTime()
		}
	}
	return latest, nil
}

// load reads the pair; the caller holds mu or is the constructor.
func (r *certReloader) load() error {
	mod, err := r.modTime()
	if err != nil {
		return err
	}
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return err
	}
	r.cert, r.mod, r.checked = &c, mod, time.Now()
	return nil
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) >= certCheckEvery {
		r.checked = time.Now()
		if mod, err := r.modTime(); err == nil && !mod.Equal(r.mod) {
			if err := r.load(); err != nil {
				r.log.Warn("TLS certificate changed but does not load; keeping the previous one", "cert", r.certFile, "err", err)
			} else {
				r.log.Info("TLS certificate reloaded", "cert", r.certFile)
			}
		}
	}
	return r.cert, nil
}
