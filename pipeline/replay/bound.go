package replay

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Bound is one end of a replayed range: unset, a time (record
// timestamps), one offset for every partition, or offsets per partition
// (partitions not listed are unbounded on that side).
type Bound struct {
	Time time.Time
	// Offset applies to every partition when Set and Offsets is nil.
	Offset  int64
	Offsets map[int32]int64
	set     bool
}

// TimeBound is the bound at time t.
func TimeBound(t time.Time) Bound { return Bound{Time: t, set: true} }

// OffsetBound is the bound at offset o in every partition.
func OffsetBound(o int64) Bound { return Bound{Offset: o, set: true} }

// PartitionBound is the bound at the given offset of each listed partition.
func PartitionBound(offsets map[int32]int64) Bound { return Bound{Offsets: offsets, set: true} }

// IsSet reports whether b bounds anything.
func (b Bound) IsSet() bool { return b.set }

// IsTime reports whether b is a time.
func (b Bound) IsTime() bool { return b.set && !b.Time.IsZero() }

// offset returns b's offset for partition p, if it has one.
func (b Bound) offset(p int32) (int64, bool) {
	switch {
	case !b.set || b.IsTime():
		return 0, false
	case b.Offsets != nil:
		o, ok := b.Offsets[p]
		return o, ok
	}
	return b.Offset, true
}

func (b Bound) String() string {
	switch {
	case !b.set:
		return "unset"
	case b.IsTime():
		return b.Time.UTC().Format(time.RFC3339Nano)
	case b.Offsets != nil:
		ps := make([]int32, 0, len(b.Offsets))
		for p := range b.Offsets {
			ps = append(ps, p)
		}
		sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
		parts := make([]string, len(ps))
		for i, p := range ps {
			parts[i] = fmt.Sprintf("%d:%d", p, b.Offsets[p])
		}
		return strings.Join(parts, ",")
	}
	return strconv.FormatInt(b.Offset, 10)
}

// ParseBound reads "" (unset), an RFC 3339 time
// (2026-01-02T15:04:05Z), an offset for every partition (1200), or
// offsets per partition (0:1200,3:480).
func ParseBound(s string) (Bound, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Bound{}, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return Bound{}, fmt.Errorf("%q: an offset must be 0 or more", s)
		}
		return OffsetBound(n), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		if t.UnixMilli() < 0 {
			return Bound{}, fmt.Errorf("%q: a time must be after 1970", s)
		}
		return TimeBound(t), nil
	}
	if !strings.Contains(s, ":") || strings.ContainsAny(s, "TZ") {
		return Bound{}, fmt.Errorf("%q: want an RFC 3339 time (2026-01-02T15:04:05Z), an offset (1200) or offsets per partition (0:1200,3:480)", s)
	}
	m := map[int32]int64{}
	for _, item := range strings.Split(s, ",") {
		ps, os, ok := strings.Cut(strings.TrimSpace(item), ":")
		p, perr := strconv.ParseInt(ps, 10, 32)
		o, oerr := strconv.ParseInt(os, 10, 64)
		switch {
		case !ok || perr != nil || oerr != nil:
			return Bound{}, fmt.Errorf("%q: %q is not PARTITION:OFFSET (e.g. 3:480)", s, item)
		case p < 0 || o < 0:
			return Bound{}, fmt.Errorf("%q: %q: partitions and offsets are 0 or more", s, item)
		}
		if _, dup := m[int32(p)]; dup {
			return Bound{}, fmt.Errorf("%q: partition %d is listed twice", s, p)
		}
		m[int32(p)] = o
	}
	return PartitionBound(m), nil
}

// checkRange reports a from that is not before to, where both are
// comparable without the broker.
func checkRange(from, to Bound) error {
	if !from.IsSet() || !to.IsSet() {
		return nil
	}
	if from.IsTime() && to.IsTime() {
		if !from.Time.Before(to.Time) {
			return fmt.Errorf("from %s is not before to %s: nothing to replay", from, to)
		}
		return nil
	}
	if from.IsTime() || to.IsTime() {
		return nil
	}
	if from.Offsets == nil && to.Offsets == nil && from.Offset >= to.Offset {
		return fmt.Errorf("from %s is not before to %s: nothing to replay", from, to)
	}
	return nil
}
