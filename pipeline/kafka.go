package pipeline

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// KafkaConfig is how every role reaches Kafka.
type KafkaConfig struct {
	// Brokers are seed host:port pairs.
	Brokers []string
	// ClientID names the process in broker logs.
	ClientID string
	// SASL authenticates every connection (kafka.sasl.*).
	SASL KafkaSASL
	// TLS encrypts every connection (kafka.tls.*).
	TLS KafkaTLS
}

// SASL mechanisms (kafka.sasl.mechanism).
const (
	SASLNone        = "none"
	SASLPlain       = "plain"
	SASLScramSHA256 = "scram-sha-256"
	SASLScramSHA512 = "scram-sha-512"
)

// SASLMechanisms lists the accepted kafka.sasl.mechanism values.
var SASLMechanisms = []string{SASLNone, SASLPlain, SASLScramSHA256, SASLScramSHA512}

// KafkaSASL is a SASL identity.
type KafkaSASL struct {
	// Mechanism is none (or empty), plain, scram-sha-256 or
	// scram-sha-512, in any case.
	Mechanism string
	Username  string
	Password  string
}

// mechanism is Mechanism normalized: lower case, "" for none.
func (s KafkaSASL) mechanism() string {
	m := strings.ToLower(strings.TrimSpace(s.Mechanism))
	if m == SASLNone {
		return ""
	}
	return m
}

// Enabled reports whether a mechanism is set.
func (s KafkaSASL) Enabled() bool { return s.mechanism() != "" }

// KafkaName is the mechanism's Kafka name (PLAIN, SCRAM-SHA-256,
// SCRAM-SHA-512), or "" for none.
func (s KafkaSASL) KafkaName() string { return strings.ToUpper(s.mechanism()) }

// Validate checks the mechanism and that a set mechanism has credentials
// (and none has none).
func (s KafkaSASL) Validate() error {
	switch m := s.mechanism(); m {
	case "":
		var set []string
		if s.Username != "" {
			set = append(set, "kafka.sasl.username")
		}
		if s.Password != "" {
			set = append(set, "kafka.sasl.password")
		}
		if len(set) > 0 {
			return fmt.Errorf("%s set but kafka.sasl.mechanism is none: set it to plain, scram-sha-256 or scram-sha-512, or clear the credentials", strings.Join(set, " and "))
		}
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if s.Username == "" {
			return fmt.Errorf("kafka.sasl.username: required with kafka.sasl.mechanism %s", m)
		}
		if s.Password == "" {
			return fmt.Errorf("kafka.sasl.password: required with kafka.sasl.mechanism %s (user %q)", m, s.Username)
		}
	default:
		return fmt.Errorf("kafka.sasl.mechanism: %q is not one of %s", s.Mechanism, strings.Join(SASLMechanisms, ", "))
	}
	return nil
}

// saslMechanism is franz-go's mechanism, or nil for none.
func (s KafkaSASL) saslMechanism() sasl.Mechanism {
	switch s.mechanism() {
	case SASLPlain:
		return plain.Auth{User: s.Username, Pass: s.Password}.AsMechanism()
	case SASLScramSHA256:
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha256Mechanism()
	case SASLScramSHA512:
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha512Mechanism()
	}
	return nil
}

// KafkaTLS is the client side of TLS to the brokers.
type KafkaTLS struct {
	Enabled bool
	// CAFile is a PEM file of the CAs that sign the brokers' certificates;
	// empty: the system's roots.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate (chain) and its
	// key, for brokers that require client certificates (mTLS). They are
	// read again when they change, so a renewed certificate needs no
	// restart.
	CertFile, KeyFile string
	// ServerName is the name the brokers' certificates must carry; empty:
	// the host of the address dialed.
	ServerName string
}

// Validate checks the settings and reads the files.
func (t KafkaTLS) Validate() error {
	_, err := t.Config()
	return err
}

// Config is the crypto/tls client configuration, nil when TLS is off.
func (t KafkaTLS) Config() (*tls.Config, error) {
	if !t.Enabled {
		var set []string
		for _, f := range []struct{ key, val string }{
			{"kafka.tls.ca_file", t.CAFile}, {"kafka.tls.cert_file", t.CertFile},
			{"kafka.tls.key_file", t.KeyFile}, {"kafka.tls.server_name", t.ServerName},
		} {
			if f.val != "" {
				set = append(set, f.key)
			}
		}
		if len(set) > 0 {
			return nil, fmt.Errorf("%s set but kafka.tls.enabled is false: set kafka.tls.enabled to true, or clear them", strings.Join(set, " and "))
		}
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka.tls.ca_file %s: no PEM certificate in it", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case t.CertFile == "" && t.KeyFile == "":
	case t.CertFile == "":
		return nil, errors.New("kafka.tls.key_file is set without kafka.tls.cert_file: set both for a client certificate, or neither")
	case t.KeyFile == "":
		return nil, errors.New("kafka.tls.cert_file is set without kafka.tls.key_file: set both for a client certificate, or neither")
	default:
		kp := &keyPair{certFile: t.CertFile, keyFile: t.KeyFile}
		if _, err := kp.get(); err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return kp.get() }
	}
	return cfg, nil
}

// keyPair loads a certificate and key, again whenever either file's
// modification time or size changes; a failed reload keeps the last good
// pair.
type keyPair struct {
	certFile, keyFile string

	mu    sync.Mutex
	stamp string
	cert  *tls.Certificate
}

func (k *keyPair) get() (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var stamp strings.Builder
	for _, f := range []string{k.certFile, k.keyFile} {
		if fi, err := os.Stat(f); err == nil {
			fmt.Fprintf(&stamp, "%d/%d;", fi.ModTime().UnixNano(), fi.Size())
		}
	}
	if k.cert != nil && stamp.String() == k.stamp {
		return k.cert, nil
	}
	c, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		if k.cert != nil {
			return k.cert, nil
		}
		return nil, fmt.Errorf("kafka.tls.cert_file %s, kafka.tls.key_file %s: %w", k.certFile, k.keyFile, err)
	}
	k.cert, k.stamp = &c, stamp.String()
	return k.cert, nil
}

// Validate checks the broker list, SASL and TLS (reading the TLS files).
func (c KafkaConfig) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("kafka.brokers: at least one host:port is required")
	}
	for _, b := range c.Brokers {
		if _, _, err := net.SplitHostPort(strings.TrimSpace(b)); err != nil {
			return fmt.Errorf("kafka.brokers: %q is not host:port: %w", b, err)
		}
	}
	return errors.Join(c.SASL.Validate(), c.TLS.Validate())
}

// Opts returns the franz-go options shared by every client of a role. A
// SASL or TLS setting that Validate would refuse makes every dial fail
// with Validate's error.
func (c KafkaConfig) Opts() []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.RetryBackoffFn(func(tries int) time.Duration {
			d := time.Duration(tries) * 50 * time.Millisecond
			if d > time.Second {
				d = time.Second
			}
			return d
		}),
		// A moved partition leader (NOT_LEADER_FOR_PARTITION) waits for a
		// metadata refresh; franz-go's 5s minimum between refreshes would
		// stall a whole sequencer transaction that long.
		kgo.MetadataMinAge(250 * time.Millisecond),
	}
	if c.ClientID != "" {
		opts = append(opts, kgo.ClientID(c.ClientID))
	}
	tc, err := c.TLS.Config()
	if err == nil {
		err = c.SASL.Validate()
	}
	switch {
	case err != nil:
		err = fmt.Errorf("kafka: %w", err)
		opts = append(opts, kgo.Dialer(func(context.Context, string, string) (net.Conn, error) { return nil, err }))
		return opts
	case tc != nil:
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if m := c.SASL.saslMechanism(); m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	return opts
}

// SetupError is a Ping failure that retrying cannot fix: credentials,
// certificates, or a TLS or SASL setting that does not match the broker.
type SetupError struct{ err error }

func (e *SetupError) Error() string { return e.err.Error() }
func (e *SetupError) Unwrap() error { return e.err }

// Ping connects to the brokers with c and asks one for metadata. Its error
// says what most likely went wrong (credentials, certificates, a TLS or
// SASL setting that does not match the broker's) and which keys to check.
func (c KafkaConfig) Ping(ctx context.Context) error {
	if err := c.Validate(); err != nil {
		return err
	}
	var hook saslHook
	cl, err := kgo.NewClient(append(c.Opts(), kgo.WithHooks(&hook))...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	if err := cl.Ping(ctx); err != nil {
		return c.explain(err, hook.failed.Load())
	}
	return nil
}

// saslHook notes a SASL request whose response never came: kfake (and
// Kafka for some failures) closes the connection instead of answering.
type saslHook struct{ failed atomic.Bool }

func (h *saslHook) OnBrokerE2E(_ kgo.BrokerMetadata, key int16, e2e kgo.BrokerE2E) {
	if (key == int16(kmsg.SASLHandshake) || key == int16(kmsg.SASLAuthenticate)) && e2e.Err() != nil {
		h.failed.Store(true)
	}
}

func (c KafkaConfig) explain(err error, saslFailed bool) error {
	brokers := strings.Join(c.Brokers, ",")
	var (
		unknownCA x509.UnknownAuthorityError
		verify    *tls.CertificateVerificationError
		host      x509.HostnameError
		header    tls.RecordHeaderError
		alert     tls.AlertError
	)
	var netErr net.Error
	timeout := errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout()
	closed := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed)
	switch {
	case errors.As(err, &unknownCA) || errors.As(err, &verify) && !errors.As(err, &host):
		ca := "the system's roots"
		if c.TLS.CAFile != "" {
			ca = c.TLS.CAFile
		}
		return &SetupError{err: fmt.Errorf("kafka %s: TLS: the broker's certificate is not signed by a trusted CA (kafka.tls.ca_file: %s): %w", brokers, ca, err)}
	case errors.As(err, &host):
		return &SetupError{err: fmt.Errorf("kafka %s: TLS: the broker's certificate is not for this name (set kafka.tls.server_name to a name it holds): %w", brokers, err)}
	case errors.As(err, &header):
		return &SetupError{err: fmt.Errorf("kafka %s: TLS: the broker does not speak TLS on this port (kafka.tls.enabled is true): %w", brokers, err)}
	case errors.As(err, &alert) || strings.Contains(err.Error(), "remote error: tls"):
		return &SetupError{err: fmt.Errorf("kafka %s: TLS: the broker refused the handshake (a client certificate it trusts, kafka.tls.cert_file and key_file, may be required): %w", brokers, err)}
	case c.SASL.Enabled() && (saslFailed || strings.Contains(err.Error(), "SASL")):
		return &SetupError{err: fmt.Errorf("kafka %s: SASL %s authentication as %q failed: check kafka.sasl.username, kafka.sasl.password and kafka.sasl.mechanism against the broker's users: %w",
			brokers, c.SASL.KafkaName(), c.SASL.Username, err)}
	case timeout && c.TLS.Enabled:
		return fmt.Errorf("kafka %s: no answer: the broker is unreachable or does not speak TLS on this port (kafka.tls.enabled is true): %w", brokers, err)
	case timeout:
		return fmt.Errorf("kafka %s: no answer: the broker is unreachable: %w", brokers, err)
	case closed && !c.SASL.Enabled() && !c.TLS.Enabled:
		return fmt.Errorf("kafka %s: the broker closed the connection: it may require SASL (kafka.sasl.*) or TLS (kafka.tls.enabled): %w", brokers, err)
	case closed && !c.SASL.Enabled():
		return fmt.Errorf("kafka %s: the broker closed the connection: it may require SASL (kafka.sasl.*) or a client certificate (kafka.tls.cert_file): %w", brokers, err)
	case closed && !c.TLS.Enabled:
		return fmt.Errorf("kafka %s: the broker closed the connection: it may require TLS (kafka.tls.enabled): %w", brokers, err)
	}
	return fmt.Errorf("kafka %s: %w", brokers, err)
}
