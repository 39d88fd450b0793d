package pipeline

import (
	"context"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Producer is what a transactional loop produces through (a
// kgo.GroupTransactSession or a kgo.Client).
type Producer interface {
	Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
}

// ProduceBatch produces the records of one transaction asynchronously and
// keeps the first failure: a transaction must not commit when any of its
// records failed.
type ProduceBatch struct {
	p   Producer
	wg  sync.WaitGroup
	mu  sync.Mutex
	err error
}

// NewProduceBatch produces through p.
func NewProduceBatch(p Producer) *ProduceBatch { return &ProduceBatch{p: p} }

// Produce sends r; Wait reports whether every record was written.
func (b *ProduceBatch) Produce(ctx context.Context, r *kgo.Record) {
	b.wg.Add(1)
	b.p.Produce(ctx, r, func(_ *kgo.Record, err error) {
		defer b.wg.Done()
		if err != nil {
			b.mu.Lock()
			if b.err == nil {
				b.err = err
			}
			b.mu.Unlock()
		}
	})
}

// Flush sends what cl holds (records a loop with HoldProduces lingers on)
// and waits for every record produced so far; it returns the first error.
func (b *ProduceBatch) Flush(ctx context.Context, cl *kgo.Client) error {
	if err := cl.Flush(ctx); err != nil {
		return fmt.Errorf("flush produces: %w", err)
	}
	return b.Wait()
}

// Wait waits for every record produced so far and returns the first error.
func (b *ProduceBatch) Wait() error {
	b.wg.Wait()
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}
