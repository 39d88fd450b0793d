package report

import (
	"slices"
	"time"
)

// The reports of the scenarios the suite runs once against the floor
// server and once against Causeway (recovery, signaling): only the fields
// the suite compares; the programs' own JSON files have everything.

// Dist is a latency distribution in milliseconds: nearest-rank
// quantiles (Quantiles), as recovery and callsetup's presence scenario
// report them.
type Dist struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
	Min   float64 `json:"min"`
}

// Quantiles sorts d and returns its nearest-rank quantiles in ms.
func Quantiles(d []time.Duration) Dist {
	if len(d) == 0 {
		return Dist{}
	}
	slices.Sort(d)
	q := func(p float64) float64 {
		i := int(p*float64(len(d))+0.999999) - 1 // nearest rank
		i = max(0, min(i, len(d)-1))
		return float64(d[i]) / 1e6
	}
	return Dist{Count: len(d), P50: q(0.50), P90: q(0.90), P99: q(0.99), Max: float64(d[len(d)-1]) / 1e6, Min: float64(d[0]) / 1e6}
}

// Recovery is benchmarks/cmd/recovery's report.
type Recovery struct {
	Target  string `json:"target"`
	Command string `json:"command"`
	Config  struct {
		Clients    int     `json:"clients"`
		GroupSize  int     `json:"group_size"`
		Groups     int     `json:"groups"`
		IntervalMs float64 `json:"interval_ms"`
		WarmupSec  float64 `json:"warmup_sec"`
		Signal     string  `json:"signal"`
		Edges      int     `json:"edges"`
	} `json:"config"`
	Affected        int      `json:"affected_clients"`
	Reconnected     int      `json:"reconnected_within_timeout"`
	Recovered       int      `json:"recovered_within_timeout"`
	DetectMs        Dist     `json:"disconnect_seen_ms"`
	ReconnectMs     Dist     `json:"reconnect_ms"`
	LiveMs          Dist     `json:"live_no_gap_ms"`
	AllRecoveredSec float64  `json:"all_recovered_sec"`
	Gaps            int      `json:"gaps"`
	Duplicates      int      `json:"duplicates"`
	Unrecoverable   int      `json:"unrecoverable_subscribed"`
	Sent            int64    `json:"sent"`
	SendErrors      int64    `json:"send_errors"`
	Pass            bool     `json:"pass"`
	Failures        []string `json:"failures,omitempty"`
}

// CallSetup is benchmarks/cmd/callsetup's report of the call scenario.
type CallSetup struct {
	Target  string   `json:"target"`
	Command string   `json:"command"`
	Cluster string   `json:"cluster"`
	Edges   []string `json:"edges"`
	Call    *struct {
		Config struct {
			Pairs        int     `json:"pairs"`
			Edges        int     `json:"edges"`
			Placement    string  `json:"placement"`
			CallsPerSec  float64 `json:"calls_per_sec"`
			PayloadBytes int     `json:"payload_bytes"`
			WarmupSec    float64 `json:"warmup_sec"`
			DurationSec  float64 `json:"duration_sec"`
			Load         bool    `json:"background_load"`
		} `json:"config"`
		Calls        int64 `json:"calls"`
		Answered     int64 `json:"answered"`
		NotAnswered  int64 `json:"not_answered"`
		SignalErrors int64 `json:"signal_errors"`
		// Milliseconds from the offer's intended send time: answer
		// received by the caller (call setup), offer received by the
		// callee; and the answer's own leg.
		SetupMs map[string]float64 `json:"setup_ms"`
		OfferMs map[string]float64 `json:"offer_ms"`
		LegMs   map[string]float64 `json:"answer_leg_ms"`
		// CPU during the window, in cores ("cluster" is the server).
		ServerCores    float64 `json:"cluster_cpu_cores"`
		GeneratorCores float64 `json:"generator_cpu_cores"`
		LoadgenCores   float64 `json:"loadgen_cpu_cores"`
		IRQCores       float64 `json:"irq_softirq_cores"`
		OtherCores     float64 `json:"other_cpu_cores"`
		Background     *struct {
			OfferedDeliveriesPerSec float64            `json:"offered_deliveries_per_sec"`
			DeliveredPerSec         float64            `json:"delivered_per_sec"`
			Lost                    int64              `json:"lost"`
			LatencyMs               map[string]float64 `json:"latency_ms"`
			Pass                    bool               `json:"pass"`
		} `json:"background,omitempty"`
	} `json:"call,omitempty"`
	Pass     bool     `json:"pass"`
	Failures []string `json:"failures,omitempty"`
}
