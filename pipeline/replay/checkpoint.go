package replay

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// ErrCheckpoint is returned for a checkpoint file that cannot be used: one
// written by another kind of run, or that does not parse.
var ErrCheckpoint = errors.New("unusable checkpoint")

const checkpointVersion = 1

// checkpoint is the progress of one run, saved after every step that
// wrote something, so that an interrupted run continues where it
// stopped. It is JSON, replaced atomically (write, sync, rename).
type checkpoint struct {
	Version int `json:"version"`
	// Run describes the run it belongs to; a run with another
	// description refuses the file.
	Run        string                     `json:"run"`
	Partitions map[string]*partCheckpoint `json:"partitions"`
	// ReceiptsDone: the receipt aggregates were written (clickhouse).
	ReceiptsDone bool `json:"receipts_done,omitempty"`
	// Copied is the last source offset copied, by source partition
	// (groups); Partitions then hold how far each destination partition
	// was read or written.
	Copied map[string]int64 `json:"copied,omitempty"`

	path string
}

// partCheckpoint is one partition's progress.
type partCheckpoint struct {
	// Offset: clickhouse, the next offset of the source topic whose rows
	// are not written yet; state, the group-log offset the partition was
	// rebuilt up to.
	Offset int64 `json:"offset"`
	// End is the end of the clickhouse range, fixed by the first run.
	End int64 `json:"end,omitempty"`
	// Done: nothing is left to do for the partition.
	Done bool `json:"done"`
	// Writing: a state --write began producing into the partition, so
	// it is not empty because of another writer.
	Writing bool `json:"writing,omitempty"`
	// Records, Keys, Differences and Written repeat a finished state
	// partition's report.
	Records     int `json:"records,omitempty"`
	Keys        int `json:"keys,omitempty"`
	Differences int `json:"differences,omitempty"`
	Written     int `json:"written,omitempty"`
}

// loadCheckpoint reads path, or starts an empty checkpoint for run when
// it does not exist. path "" keeps the checkpoint in memory only.
func loadCheckpoint(path, run string) (*checkpoint, bool, error) {
	cp := &checkpoint{Version: checkpointVersion, Run: run, Partitions: map[string]*partCheckpoint{}, path: path}
	if path == "" {
		return cp, false, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cp, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read checkpoint: %w", err)
	}
	var got checkpoint
	if err := json.Unmarshal(b, &got); err != nil || got.Version != checkpointVersion || got.Partitions == nil {
		return nil, false, fmt.Errorf("%w: %s is not a replay checkpoint (version %d) (%v): delete it or choose another file", ErrCheckpoint, path, checkpointVersion, err)
	}
	if got.Run != run {
		return nil, false, fmt.Errorf("%w: %s belongs to another run:\n  it is for:  %s\n  this run is: %s\ndelete it to start again, or run with the same flags to continue it", ErrCheckpoint, path, got.Run, run)
	}
	got.path = path
	return &got, true, nil
}

func (cp *checkpoint) part(p int32) *partCheckpoint {
	k := strconv.Itoa(int(p))
	pc := cp.Partitions[k]
	if pc == nil {
		pc = &partCheckpoint{}
		cp.Partitions[k] = pc
	}
	return pc
}

func (cp *checkpoint) has(p int32) (*partCheckpoint, bool) {
	pc, ok := cp.Partitions[strconv.Itoa(int(p))]
	return pc, ok
}

// advance records that partition p's rows are written up to offset off
// (exclusive), of a range fixed by the first run.
func (cp *checkpoint) advance(p int32, off int64) {
	pc := cp.part(p)
	pc.Offset = off
	pc.Done = off >= pc.End
}

// save replaces the file atomically.
func (cp *checkpoint) save() error {
	if cp.path == "" {
		return nil
	}
	b, err := json.MarshalIndent(cp, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(cp.path), "."+filepath.Base(cp.path)+".*")
	if err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("save checkpoint: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save checkpoint: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	if err := os.Rename(tmp.Name(), cp.path); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	return nil
}
