package main

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/causeway/causeway/benchmarks/internal/procs"
)

// floorPair is -target floor: two floor servers (benchmarks/cmd/floor),
// the floor's counterpart of Causeway's three edges. Floors share no
// state, so a group lives wholly on one of them: its members and its
// publisher prefer that one and fail over to the other. Killing the first
// moves its clients to the second, which is already listening, as
// Causeway's clients move to the surviving edges: no server restart is in
// the floor's figure, only what a client must do to resume (notice,
// redial, hello, resubscribe) against a server that does nothing else.
type floorPair struct {
	procs [2]*procs.Proc
	addrs [2]string
	ids   [2]string
}

func startFloorPair(ctx context.Context, bin, dir string) (*floorPair, error) {
	f := &floorPair{ids: [2]string{"floor-a", "floor-b"}}
	for i := range f.procs {
		addr, err := procs.FreeAddr()
		if err != nil {
			f.stop()
			return nil, fmt.Errorf("pick %s's address: %w", f.ids[i], err)
		}
		p, err := procs.Start(f.ids[i], dir, bin, nil, "-addr", addr, "-id", f.ids[i])
		if err != nil {
			f.stop()
			return nil, fmt.Errorf("start %s: %w", f.ids[i], err)
		}
		f.procs[i], f.addrs[i] = p, addr
		if _, err := p.WaitLine(ctx, "floor: ws://", 20*time.Second); err != nil {
			f.stop()
			return nil, fmt.Errorf("start %s on %s: %w", f.ids[i], addr, err)
		}
	}
	return f, nil
}

// kill SIGKILLs the first floor's process group and waits for it to be
// gone.
func (f *floorPair) kill() {
	_ = syscall.Kill(-f.procs[0].PID(), syscall.SIGKILL)
	<-f.procs[0].Done
}

// stop kills whichever floor processes are running.
func (f *floorPair) stop() {
	for _, p := range f.procs {
		if p != nil {
			p.Kill()
		}
	}
}
