package pipeline

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// BrokerConfig configures the embedded Kafka-protocol broker.
type BrokerConfig struct {
	// Listen is host:port; port 0 picks a free port.
	Listen string
	// DataDir persists every topic, offset and group; empty keeps
	// everything in memory.
	DataDir string
	// Sync fsyncs every produced batch, so a SIGKILLed broker loses no
	// acknowledged write. Without it, acknowledged writes survive a
	// process crash (they are in the page cache) but not a machine crash.
	Sync bool

	// Users, when not empty, turn SASL on: every connection must
	// authenticate as one of them. Users come only from here: with a
	// DataDir, the users a previous run stored are forgotten at start.
	Users []BrokerUser

	// TLSCertFile and TLSKeyFile (PEM) make the broker serve TLS only.
	TLSCertFile, TLSKeyFile string
	// TLSClientCAFile (PEM), with TLS, makes the broker require client
	// certificates signed by one of its CAs (mTLS).
	TLSClientCAFile string
}

// BrokerUser is a SASL user of the embedded broker.
type BrokerUser struct {
	// Mechanism is plain, scram-sha-256 or scram-sha-512 (as
	// kafka.sasl.mechanism); a user is known to one mechanism only.
	Mechanism string
	Username  string
	Password  string
}

// ParseBrokerUser reads MECHANISM:USER:PASSWORD (the password may hold
// colons).
func ParseBrokerUser(s string) (BrokerUser, error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) != 3 {
		return BrokerUser{}, errors.New("want MECHANISM:USER:PASSWORD (mechanism plain, scram-sha-256 or scram-sha-512)")
	}
	u := BrokerUser{Mechanism: parts[0], Username: parts[1], Password: parts[2]}
	return u, u.validate()
}

func (u BrokerUser) validate() error {
	s := KafkaSASL{Mechanism: u.Mechanism, Username: u.Username, Password: u.Password}
	if !s.Enabled() {
		return fmt.Errorf("broker user %q: mechanism %q: want plain, scram-sha-256 or scram-sha-512", u.Username, u.Mechanism)
	}
	if err := s.Validate(); err != nil {
		return fmt.Errorf("broker user %q: %w", u.Username, err)
	}
	return nil
}

// serverTLS is the broker's TLS config, nil without a certificate.
func (cfg BrokerConfig) serverTLS() (*tls.Config, error) {
	switch {
	case cfg.TLSCertFile == "" && cfg.TLSKeyFile == "":
		if cfg.TLSClientCAFile != "" {
			return nil, errors.New("broker: a TLS client CA needs a TLS certificate and key")
		}
		return nil, nil
	case cfg.TLSCertFile == "" || cfg.TLSKeyFile == "":
		return nil, errors.New("broker: TLS needs both a certificate and a key file")
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("broker TLS certificate %s, key %s: %w", cfg.TLSCertFile, cfg.TLSKeyFile, err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if cfg.TLSClientCAFile != "" {
		pem, err := os.ReadFile(cfg.TLSClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("broker TLS client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("broker TLS client CA %s: no PEM certificate in it", cfg.TLSClientCAFile)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// Broker is an embedded single-node Kafka-protocol broker (franz-go's kfake).
type Broker struct {
	cluster   *kfake.Cluster
	addr      string
	tls, sasl bool
}

// NewBroker starts the broker; it serves until Close.
func NewBroker(cfg BrokerConfig) (*Broker, error) {
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("broker listen address %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("broker listen address %q: bad port", cfg.Listen)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	var addr string
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.ClusterID("causeway"),
		// kfake always asks for 127.0.0.1; listen where we were told.
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			ln, err := net.Listen(network, net.JoinHostPort(host, strconv.Itoa(port)))
			if err == nil {
				addr = ln.Addr().String()
			}
			return ln, err
		}),
		kfake.GroupMinSessionTimeout(time.Second),
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	if cfg.Sync {
		if cfg.DataDir == "" {
			return nil, errors.New("broker: sync needs a data dir")
		}
		opts = append(opts, kfake.SyncWrites())
	}
	tc, err := cfg.serverTLS()
	if err != nil {
		return nil, err
	}
	if tc != nil {
		opts = append(opts, kfake.TLS(tc))
	}
	if len(cfg.Users) > 0 {
		opts = append(opts, kfake.EnableSASL())
		seen := map[string]bool{}
		for _, u := range cfg.Users {
			if err := u.validate(); err != nil {
				return nil, err
			}
			name := KafkaSASL{Mechanism: u.Mechanism}.KafkaName()
			k := name + "\x00" + u.Username
			if seen[k] {
				return nil, fmt.Errorf("broker user %q: listed twice for %s", u.Username, name)
			}
			seen[k] = true
			// Without ACLs (kfake's default) any authenticated user may
			// do anything; superusers keep that true if ACLs are added.
			opts = append(opts, kfake.Superuser(name, u.Username, u.Password))
		}
	}
	if cfg.DataDir != "" {
		// kfake restores the SASL users it stored over the configured
		// ones: a changed password or a removed user would still work.
		if err := os.Remove(filepath.Join(cfg.DataDir, "sasl.json")); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("broker: forget stored SASL users: %w", err)
		}
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start embedded broker on %s: %w", cfg.Listen, err)
	}
	if addr == "" {
		addr = c.ListenAddrs()[0]
	}
	return &Broker{cluster: c, addr: addr, tls: tc != nil, sasl: len(cfg.Users) > 0}, nil
}

// Addr is the host:port clients connect to.
func (b *Broker) Addr() string { return b.addr }

// TLS reports whether the broker serves TLS.
func (b *Broker) TLS() bool { return b.tls }

// SASL reports whether the broker requires SASL.
func (b *Broker) SASL() bool { return b.sasl }

// Cluster exposes kfake for fault injection in tests.
func (b *Broker) Cluster() *kfake.Cluster { return b.cluster }

// Run serves until ctx is done, then closes the broker (flushing its data
// dir).
func (b *Broker) Run(ctx context.Context) error {
	<-ctx.Done()
	b.cluster.Close()
	return nil
}

// Close stops the broker and flushes its data dir.
func (b *Broker) Close() { b.cluster.Close() }
