// Package machine describes the machine a benchmark runs on, prepares it
// (open-file limit) and writes reports, for every program under
// benchmarks/.
package machine

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
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

// ProcCPU is the CPU time (user + system) process pid has used so far,
// from /proc/<pid>/stat; 0 if pid is not positive or unknown.
func ProcCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// Status is part of /proc/<pid>/status.
type Status struct {
	RSSKiB  int64 `json:"vm_rss_kib"` // VmRSS
	HWMKiB  int64 `json:"vm_hwm_kib"` // VmHWM, the peak RSS
	Threads int   `json:"threads"`
}

// ProcStatus reads VmRSS, VmHWM and Threads of pid (zeros if unknown).
func ProcStatus(pid int) Status {
	var st Status
	if pid <= 0 {
		return st
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			st.RSSKiB = n
		case "VmHWM":
			st.HWMKiB = n
		case "Threads":
			st.Threads = int(n)
		}
	}
	return st
}

// Busy is the non-idle CPU time of the whole machine so far, and the part
// of it spent in interrupts and softirqs (where loopback networking goes
// when it is not charged to a process), from /proc/stat; zeros if unknown.
func Busy() (busy, irq time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, 0
	}
	var all, ir int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is already in user
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, 0
		}
		all += n
		if i == 5 || i == 6 {
			ir += n
		}
	}
	return time.Duration(all) * time.Second / 100, time.Duration(ir) * time.Second / 100 // USER_HZ is 100
}
