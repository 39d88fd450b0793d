// Package devcluster runs a whole Causeway cluster in one process: the
// embedded broker, one sequencer and N edges. `causeway dev`, the
// integration tests and the benchmarks use it.
//
// Concurrency: Start launches one goroutine per role and Close stops them in
// order; a Cluster's methods may be called from any goroutine.
package devcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/causeway/causeway/consumers/rollup"
	"github.com/causeway/causeway/consumers/sequencer"
	"github.com/causeway/causeway/edge"
	"github.com/causeway/causeway/pipeline"
	"github.com/prometheus/client_golang/prometheus"
)

// Config describes the cluster. Edge and Sequencer are templates: Start
// fills in IDs, addresses and brokers.
type Config struct {
	Edges int
	// HTTPAddr is the first edge's host:port; edge i listens on port+i,
	// or on a free port when the port is 0.
	HTTPAddr string
	// Broker configures the embedded broker; DataDir empty keeps data
	// in memory.
	Broker    pipeline.BrokerConfig
	Edge      edge.Config
	Sequencer sequencer.Config
	// Rollup runs when its GroupID is set (DefaultConfig sets it).
	Rollup rollup.Config
	// Analytics, if set, runs the rollup's analytics sink with it.
	Analytics *rollup.SinkConfig
}

// Cluster is a running in-process cluster.
type Cluster struct {
	Broker    *pipeline.Broker
	Edges     []*edge.Server
	Sequencer *sequencer.Sequencer
	Rollup    *rollup.Rollup
	Sink      *rollup.Sink

	seqCancel, edgeCancel, rollupCancel context.CancelFunc
	seqDone, rollupDone                 chan error
	edgeDone                            []chan error
	closed                              bool
}

// DefaultConfig is a dev cluster with n edges on free ports and an
// in-memory broker, signing tokens with secret.
func DefaultConfig(n int, secret []byte) Config {
	e := edge.DefaultConfig()
	e.Secret = secret
	return Config{
		Edges:    n,
		HTTPAddr: "127.0.0.1:0",
		Broker:   pipeline.BrokerConfig{Listen: "127.0.0.1:0"},
		Edge:     e,
		Sequencer: sequencer.Config{
			Layout:             e.Layout,
			GroupID:            "causeway-sequencer",
			InstanceID:         "dev",
			Limits:             sequencer.DefaultLimits(),
			MaxBatch:           2000,
			SessionTimeout:     6 * time.Second,
			TransactionTimeout: 10 * time.Second,
		},
		Rollup: rollup.Config{
			Layout:             e.Layout,
			GroupID:            "causeway-rollup",
			InstanceID:         "dev",
			Limits:             rollup.DefaultLimits(),
			MaxBatch:           2000,
			SessionTimeout:     6 * time.Second,
			TransactionTimeout: 10 * time.Second,
		},
	}
}

// Start starts the broker, the sequencer and the edges, and waits until
// every edge is ready or ctx is done.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	host, portStr, err := net.SplitHostPort(cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("http addr %q: %w", cfg.HTTPAddr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port+cfg.Edges > 65536 {
		return nil, fmt.Errorf("http addr %q: bad port", cfg.HTTPAddr)
	}
	if cfg.Edges < 1 {
		return nil, errors.New("a cluster needs at least one edge")
	}
	bc, err := cfg.brokerConfig()
	if err != nil {
		return nil, err
	}
	b, err := pipeline.NewBroker(bc)
	if err != nil {
		return nil, err
	}
	brokers := []string{b.Addr()}
	// A credential or certificate the broker refuses is said at once,
	// not after the roles have retried until ctx ends.
	for _, k := range cfg.kafkaConfigs() {
		k.Brokers = brokers
		if err := k.Ping(ctx); err != nil {
			b.Close()
			return nil, fmt.Errorf("%s: %w", k.ClientID, err)
		}
	}
	c := &Cluster{Broker: b, seqDone: make(chan error, 1)}

	sc := cfg.Sequencer
	sc.Kafka.Brokers = brokers
	if sc.Kafka.ClientID == "" {
		sc.Kafka.ClientID = "causeway-sequencer"
	}
	if sc.Registerer == nil {
		sc.Registerer = prometheus.NewRegistry()
	}
	seq, err := sequencer.New(sc)
	if err != nil {
		b.Close()
		return nil, err
	}
	c.Sequencer = seq
	seqCtx, seqCancel := context.WithCancel(context.Background())
	c.seqCancel = seqCancel
	go func() { c.seqDone <- seq.Run(seqCtx) }()

	if rc := cfg.Rollup; rc.GroupID != "" {
		rc.Kafka.Brokers = brokers
		if rc.Kafka.ClientID == "" {
			rc.Kafka.ClientID = "causeway-rollup"
		}
		if rc.Registerer == nil {
			rc.Registerer = prometheus.NewRegistry()
		}
		var sink *rollup.Sink
		if cfg.Analytics != nil {
			sc := *cfg.Analytics
			sc.Kafka.Brokers = brokers
			if sc.Kafka.ClientID == "" {
				sc.Kafka.ClientID = "causeway-rollup-sink"
			}
			if sc.Layout.GroupTopic == "" {
				sc.Layout = rc.Layout
			}
			if sink, err = rollup.NewSink(sc); err != nil {
				_ = c.Close()
				return nil, err
			}
			rc.Receipts = sink.AddReceipts
		}
		ru, err := rollup.New(rc)
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		c.Rollup, c.Sink = ru, sink
		ctx, cancel := context.WithCancel(context.Background())
		c.rollupCancel, c.rollupDone = cancel, make(chan error, 1)
		if sink == nil {
			go func() { c.rollupDone <- ru.Run(ctx) }()
		} else {
			go func() {
				errc := make(chan error, 1)
				go func() { errc <- sink.Run(ctx) }()
				err := ru.Run(ctx)
				c.rollupDone <- errors.Join(err, <-errc)
			}()
		}
	}

	edgeCtx, edgeCancel := context.WithCancel(context.Background())
	c.edgeCancel = edgeCancel
	for i := 0; i < cfg.Edges; i++ {
		ec := cfg.Edge
		ec.ID = fmt.Sprintf("edge-%d", i+1)
		ec.Kafka.Brokers = brokers
		ec.Kafka.ClientID = "causeway-" + ec.ID
		ec.Registry = prometheus.NewRegistry()
		ec.HTTPAddr = net.JoinHostPort(host, "0")
		if port != 0 {
			ec.HTTPAddr = net.JoinHostPort(host, strconv.Itoa(port+i))
		}
		s, err := edge.New(ec)
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		done := make(chan error, 1)
		c.Edges = append(c.Edges, s)
		c.edgeDone = append(c.edgeDone, done)
		go func() { done <- s.Run(edgeCtx) }()
	}
	if err := c.waitReady(ctx); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// SetKafkaSecurity gives every role (edges, sequencer, rollup, analytics
// sink) the same SASL identity and TLS settings.
func (c *Config) SetKafkaSecurity(sasl pipeline.KafkaSASL, tls pipeline.KafkaTLS) {
	for _, k := range []*pipeline.KafkaConfig{&c.Edge.Kafka, &c.Sequencer.Kafka, &c.Rollup.Kafka} {
		k.SASL, k.TLS = sasl, tls
	}
	if c.Analytics != nil {
		c.Analytics.Kafka.SASL, c.Analytics.Kafka.TLS = sasl, tls
	}
}

// kafkaConfigs are the Kafka settings of the roles that run, named by
// role in ClientID.
func (c Config) kafkaConfigs() []pipeline.KafkaConfig {
	named := func(k pipeline.KafkaConfig, role string) pipeline.KafkaConfig {
		k.ClientID = "causeway-" + role
		return k
	}
	ks := []pipeline.KafkaConfig{named(c.Edge.Kafka, "edge"), named(c.Sequencer.Kafka, "sequencer")}
	if c.Rollup.GroupID != "" {
		ks = append(ks, named(c.Rollup.Kafka, "rollup"))
		if c.Analytics != nil {
			ks = append(ks, named(c.Analytics.Kafka, "rollup-sink"))
		}
	}
	return ks
}

// brokerConfig is cfg.Broker and, when it lists no SASL users, the roles'
// SASL identities as its users (so `causeway dev` with kafka.sasl.* set
// works). It refuses TLS settings the roles and the broker do not share.
func (c Config) brokerConfig() (pipeline.BrokerConfig, error) {
	bc := c.Broker
	bc.Users = slices.Clone(bc.Users)
	for _, k := range c.kafkaConfigs() {
		if err := k.SASL.Validate(); err != nil {
			return bc, fmt.Errorf("%s: %w", k.ClientID, err)
		}
		brokerTLS := bc.TLSCertFile != ""
		switch {
		case k.TLS.Enabled && !brokerTLS:
			return bc, fmt.Errorf("%s: kafka.tls.enabled is true but the embedded broker has no TLS certificate", k.ClientID)
		case !k.TLS.Enabled && brokerTLS:
			return bc, fmt.Errorf("%s: the embedded broker serves TLS but kafka.tls.enabled is false", k.ClientID)
		}
		if !k.SASL.Enabled() || len(c.Broker.Users) > 0 {
			continue
		}
		u := pipeline.BrokerUser{Mechanism: k.SASL.Mechanism, Username: k.SASL.Username, Password: k.SASL.Password}
		if !slices.Contains(bc.Users, u) {
			bc.Users = append(bc.Users, u)
		}
	}
	return bc, nil
}

func (c *Cluster) waitReady(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		ready := true
		for _, e := range c.Edges {
			ready = ready && e.Ready()
		}
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not ready: %w", ctx.Err())
		case err := <-c.seqDone:
			c.seqDone <- err
			return fmt.Errorf("sequencer stopped: %v", err)
		case <-t.C:
		}
	}
}

// URL is edge i's WebSocket URL.
func (c *Cluster) URL(i int) string { return "ws://" + c.Edges[i].Addr() + "/v1/ws" }

// PageURL is edge i's browser demo page (edge/web).
func (c *Cluster) PageURL(i int) string { return "http://" + c.Edges[i].Addr() + "/" }

// Close stops the edges (they flush their producers), then the sequencer
// (it ends its transaction), then the broker (it flushes its data dir).
func (c *Cluster) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	var errs []error
	if c.edgeCancel != nil {
		c.edgeCancel()
	}
	for _, d := range c.edgeDone {
		errs = append(errs, <-d)
	}
	if c.rollupCancel != nil {
		c.rollupCancel()
		errs = append(errs, <-c.rollupDone)
	}
	c.seqCancel()
	errs = append(errs, <-c.seqDone)
	c.Broker.Close()
	return errors.Join(errs...)
}

// DataDir is the conventional broker data dir under a dev data dir.
func DataDir(root string) string { return filepath.Join(root, "broker") }
