package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	"time"

	"github.com/causeway/causeway/consumers/sequencer"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
)

func newSequencerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sequencer",
		Short: "Run a sequencer: dense per-group seqs and exactly-once fan-out",
		Args:  cobra.NoArgs,
	}
	cmd.Flags().String("brokers", "", "Kafka seed brokers, comma-separated")
	cmd.Flags().String("id", "", "instance ID, unique and stable per sequencer (default: the host name)")
	cmd.Flags().String("metrics-addr", "", "serve /metrics and /healthz on host:port (empty: off)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := load(cmd, flagKeys{"brokers": "kafka.brokers", "id": "sequencer.instance_id"})
		if err != nil {
			return err
		}
		log := newLogger(c.Log)
		id := c.Sequencer.InstanceID
		if id == "" {
			id = defaultInstance()
		}
		reg := prometheus.NewRegistry()
		sc := sequencerConfig(c, id, log, reg)
		s, err := sequencer.New(sc)
		if err != nil {
			return err
		}
		g, ctx := errgroup.WithContext(cmd.Context())
		g.Go(func() error { return checkKafka(ctx, sc.Kafka, log) })
		g.Go(func() error { return s.Run(ctx) })
		addr, _ := cmd.Flags().GetString("metrics-addr")
		if err := serveMetrics(ctx, g, addr, reg, c.Admin.Pprof, nil); err != nil {
			return err
		}
		log.Info("sequencer started", "instance", id, "brokers", c.Kafka.Brokers)
		return g.Wait()
	}
	return cmd
}

// serveMetrics serves /metrics and /healthz on addr (nothing when empty)
// until ctx is done, and /debug/pprof/ when pprof is on (admin.pprof: an
// operator's address, never a public one).
//
// ready, if set, answers /readyz (503 when false).
func serveMetrics(ctx context.Context, g *errgroup.Group, addr string, reg prometheus.Gatherer, pprof bool, ready func() bool) error {
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil && !ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	if pprof {
		mux.HandleFunc("/debug/pprof/", httppprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", httppprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", httppprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", httppprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", httppprof.Trace)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	g.Go(func() error {
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error { <-ctx.Done(); return hs.Close() })
	return nil
}
