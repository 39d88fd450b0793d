package pipeline

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
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
}

// Broker is an embedded single-node Kafka-protocol broker (franz-go's kfake).
type Broker struct {
	cluster *kfake.Cluster
	addr    string
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
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start embedded broker on %s: %w", cfg.Listen, err)
	}
	if addr == "" {
		addr = c.ListenAddrs()[0]
	}
	return &Broker{cluster: c, addr: addr}, nil
}

// Addr is the host:port clients connect to.
func (b *Broker) Addr() string { return b.addr }

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
