// Package machine describes the machine a benchmark runs on, prepares it
// (open-file limit) and writes reports, for every program under
// benchmarks/.
package machine

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// CPUModel is the first "model name" of /proc/cpuinfo ("" if unknown).
func CPUModel() string { return procField("/proc/cpuinfo", "model name") }

// MemTotal is MemTotal of /proc/meminfo, e.g. "24684440 kB" ("" if unknown).
func MemTotal() string { return procField("/proc/meminfo", "MemTotal") }

func procField(path, key string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// RaiseNoFile raises the soft open-file limit to the hard one (many
// connections per process) and returns the limit now in force.
func RaiseNoFile() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return 0, err
		}
	}
	return rl.Cur, nil
}

// WriteJSON writes v, indented, to path, creating its directory.
func WriteJSON(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
