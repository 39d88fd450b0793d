package pipeline

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// KafkaConfig is how every role reaches Kafka.
type KafkaConfig struct {
	// Brokers are seed host:port pairs.
	Brokers []string
	// ClientID names the process in broker logs.
	ClientID string
}

// Validate checks the broker list.
func (c KafkaConfig) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("kafka.brokers: at least one host:port is required")
	}
	for _, b := range c.Brokers {
		if _, _, err := net.SplitHostPort(strings.TrimSpace(b)); err != nil {
			return fmt.Errorf("kafka.brokers: %q is not host:port: %w", b, err)
		}
	}
	return nil
}

// Opts returns the franz-go options shared by every client of a role.
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
	return opts
}
