package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/causeway/causeway/cmd/causeway/internal/config"
	"github.com/causeway/causeway/consumers/sequencer"
	"github.com/causeway/causeway/edge"
	"github.com/causeway/causeway/pipeline"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
)

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "causeway",
		Short:         "Causeway: the signaling and group-messaging backbone on Kafka",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().String("config", "", "YAML config file (or CAUSEWAY_CONFIG)")
	root.PersistentFlags().String("log-level", "", "debug, info, warn or error")
	root.AddCommand(newDevCmd(), newBrokerCmd(), newEdgeCmd(), newSequencerCmd(), newRollupCmd(), newTokenCmd(), newClientCmd(), newInspectCmd(), newTopicsCmd(), newMigrateCmd(), newReplayCmd())
	return root
}

// flagKeys maps a command's flags to config keys.
type flagKeys map[string]string

// load reads the configuration for cmd, binding its flags first.
func load(cmd *cobra.Command, keys flagKeys) (config.Config, error) {
	l := config.NewLoader()
	keys["log-level"] = "log.level"
	for name, key := range keys {
		f := cmd.Flags().Lookup(name)
		if f == nil {
			return config.Config{}, fmt.Errorf("internal: no flag --%s", name)
		}
		if err := l.BindFlag(key, f); err != nil {
			return config.Config{}, err
		}
	}
	file, _ := cmd.Flags().GetString("config")
	return l.Load(file)
}

func newLogger(c config.Log) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(strings.ToUpper(c.Level)))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// kafkaConfig is every role's way to Kafka (kafka.*): edge, sequencer,
// rollup and its sink, inspect, topics, replay and dev all build theirs
// here, so SASL and TLS reach each of them.
func kafkaConfig(c config.Config, role string) pipeline.KafkaConfig {
	k := c.Kafka
	return pipeline.KafkaConfig{
		Brokers:  k.Brokers,
		ClientID: k.ClientID + "-" + role,
		SASL:     pipeline.KafkaSASL{Mechanism: k.SASLMechanism, Username: k.SASLUsername, Password: k.SASLPassword},
		TLS: pipeline.KafkaTLS{
			Enabled: k.TLS, CAFile: k.TLSCAFile, CertFile: k.TLSCertFile, KeyFile: k.TLSKeyFile,
			ServerName: k.TLSServerName,
		},
	}
}

func layout(c config.Config) pipeline.Layout {
	return pipeline.Layout{
		GroupTopic:         c.Topics.Groups,
		StateTopic:         c.Topics.State,
		RollupStateTopic:   c.Topics.RollupState,
		DeliveryTopic:      c.Topics.Deliveries,
		GroupPartitions:    int32(c.Topics.GroupPartitions),
		DeliveryPartitions: int32(c.Topics.DeliveryPartitions),
		ReplicationFactor:  int16(c.Topics.ReplicationFactor),
	}
}

func edgeConfig(c config.Config, id, addr string, log *slog.Logger) edge.Config {
	return edge.Config{
		ID:                id,
		HTTPAddr:          addr,
		Kafka:             kafkaConfig(c, "edge-"+id),
		Layout:            layout(c),
		Secret:            []byte(c.Auth.Secret),
		PublicKeyFile:     c.Auth.PublicKeysFile,
		JWKSURL:           c.Auth.JWKSURL,
		JWKSRefresh:       c.Auth.JWKSRefresh,
		TokenIssuer:       c.Auth.Issuer,
		TokenAudience:     c.Auth.Audience,
		MaxTokenLifetime:  c.Auth.MaxTokenLifetime,
		AllowedOrigins:    c.Edge.AllowedOrigins,
		TrustedProxies:    c.Edge.TrustedProxies,
		IPLimitsExempt:    c.Edge.IPLimitsExempt,
		MaxFrameBytes:     c.Edge.MaxFrameBytes,
		MaxBodyBytes:      c.Edge.MaxBodyBytes,
		Reach:             c.Edge.Reach,
		MaxMessageBytes:   c.Edge.MaxMessageBytes,
		QueueFrames:       c.Edge.QueueFrames,
		QueueBytes:        c.Edge.QueueBytes,
		MaxBadFrames:      c.Edge.MaxBadFrames,
		HelloTimeout:      c.Edge.HelloTimeout,
		WriteTimeout:      c.Edge.WriteTimeout,
		PingInterval:      c.Edge.PingInterval,
		PongTimeout:       c.Edge.PongTimeout,
		HeartbeatInterval: c.Edge.Heartbeat,
		ProduceTimeout:    c.Edge.ProduceTimeout,
		SlowConsumerAfter: c.Edge.SlowConsumerAfter,
		SignalTTL:         c.Edge.SignalTTL,

		ConnFramesPerSec:   c.Edge.ConnFramesPerSec,
		ConnBytesPerSec:    c.Edge.ConnBytesPerSec,
		UserFramesPerSec:   c.Edge.UserFramesPerSec,
		UserBytesPerSec:    c.Edge.UserBytesPerSec,
		MaxRateLimited:     c.Edge.MaxRateLimited,
		MaxSessionsPerUser: c.Edge.MaxSessionsPerUser,
		MaxSubscriptions:   c.Edge.MaxSubscriptions,
		MaxConnsPerIP:      c.Edge.MaxConnsPerIP,
		ConnRatePerIP:      c.Edge.ConnRatePerIP,
		IdleTimeout:        c.Edge.IdleTimeout,
		TLSCert:            c.Edge.TLSCert,
		TLSKey:             c.Edge.TLSKey,

		Registry: prometheus.NewRegistry(),
		Logger:   log,
	}
}

func sequencerConfig(c config.Config, instance string, log *slog.Logger, reg prometheus.Registerer) sequencer.Config {
	return sequencer.Config{
		Kafka:      kafkaConfig(c, "sequencer-"+instance),
		Layout:     layout(c),
		GroupID:    c.Sequencer.GroupID,
		InstanceID: instance,
		Limits: sequencer.Limits{
			DedupWindow:  c.Sequencer.DedupWindow,
			HistoryCount: c.Sequencer.HistoryCount,
			HistoryAge:   c.Sequencer.HistoryAge,
			HistoryBytes: c.Sequencer.HistoryBytes,
			EdgeTimeout:  c.Sequencer.EdgeTimeout,
			// Signals carry the edge's TTL; this covers records without.
			SignalTTL:        c.Edge.SignalTTL,
			SignalBuffer:     c.Sequencer.SignalBuffer,
			CallIdle:         c.Sequencer.CallIdle,
			PresenceWindow:   c.Sequencer.PresenceWindow,
			PresenceMaxGroup: c.Sequencer.PresenceMaxGroup,
			TypingWindow:     c.Sequencer.TypingWindow,
			TypingExpiry:     c.Sequencer.TypingExpiry,
			// Joins over these are refused; see reach.go.
			MaxGroupsPerUser:   c.Sequencer.MaxGroupsPerUser,
			MaxMembersPerGroup: c.Sequencer.MaxMembersPerGroup,
		},
		MaxBatch:           c.Sequencer.MaxBatch,
		Linger:             c.Sequencer.Linger,
		SessionTimeout:     c.Sequencer.SessionTimeout,
		TransactionTimeout: c.Sequencer.TransactionTimeout,
		Logger:             log,
		Registerer:         reg,
	}
}

func defaultInstance() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "local"
	}
	return h
}
