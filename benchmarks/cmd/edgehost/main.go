// Command edgehost runs one Causeway edge, the code `causeway edge` runs
// (package edge with edge.DefaultConfig: the documented defaults), in a
// process of its own with an admin endpoint the idle benchmark needs and
// `causeway edge` does not have:
//
//   - GET /debug/gc runs a full GC, returns free memory to the OS
//     (debug.FreeOSMemory) and answers goroutines, heap and stack figures
//     as JSON, so that RSS can be read after GC;
//   - /debug/pprof/ (heap, goroutine, profile, ...) on the admin address;
//   - /metrics on the edge's own port also carries the Go runtime's
//     collector (go_goroutines, go_memstats_*).
//
// The edge's abuse limits (per-IP connections and rate, per-connection and
// per-user frame and byte rates) are off unless -limits: every benchmark
// client comes from loopback. It prints "edge ID listening on ws://ADDR/v1/ws"
// and "admin on http://ADDR". SIGINT/SIGTERM stop it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/causeway/causeway/edge"
	"github.com/causeway/causeway/pipeline"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

var (
	brokers   = flag.String("brokers", "127.0.0.1:9092", "Kafka seed brokers, comma-separated")
	httpAddr  = flag.String("http-addr", "127.0.0.1:0", "the edge's listen address")
	adminAddr = flag.String("admin-addr", "127.0.0.1:0", "admin listen address (/debug/gc)")
	id        = flag.String("id", "edge-1", "edge ID")
	secret    = flag.String("secret", "", "HS256 token secret (required)")
	limits    = flag.Bool("limits", false, "keep the edge's default abuse limits (off by default)")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "edgehost:", err)
		os.Exit(1)
	}
}

func run() error {
	if *secret == "" {
		return errors.New("-secret is required")
	}
	cfg := edge.DefaultConfig()
	cfg.ID, cfg.HTTPAddr, cfg.Secret = *id, *httpAddr, []byte(*secret)
	cfg.Kafka = pipeline.KafkaConfig{Brokers: strings.Split(*brokers, ","), ClientID: "causeway-edge-" + *id}
	if !*limits {
		cfg.MaxConnsPerIP, cfg.ConnRatePerIP = 0, 0
		cfg.ConnFramesPerSec, cfg.ConnBytesPerSec, cfg.UserFramesPerSec, cfg.UserBytesPerSec = 0, 0, 0, 0
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Registry = reg
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := edge.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *adminAddr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/gc", gcHandler)
	// Profiles of the connections' memory (go tool pprof .../heap).
	mux.HandleFunc("/debug/pprof/", httppprof.Index)
	mux.HandleFunc("/debug/pprof/profile", httppprof.Profile)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()
	fmt.Printf("edge %s listening on ws://%s/v1/ws\n", *id, s.Addr())
	fmt.Printf("admin on http://%s\n", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return s.Run(ctx)
}

func gcHandler(w http.ResponseWriter, _ *http.Request) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"goroutines":  runtime.NumGoroutine(),
		"heap_alloc":  ms.HeapAlloc,
		"heap_inuse":  ms.HeapInuse,
		"stack_inuse": ms.StackInuse,
		"sys":         ms.Sys,
		"num_gc":      ms.NumGC,
	})
}
