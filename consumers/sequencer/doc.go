// Package sequencer numbers each group's timeline events densely (1, 2, 3,
// ...) and fans them out, one delivery per event per edge holding
// recipients, exactly once.
//
// It is a consumer group over the group log. Per partition, State holds the
// groups' seqs, members, attachments and send dedup; State.Apply is a pure
// function of state and record. Sequencer.Run is the consume-process-produce
// loop: each batch of records is applied, and its deliveries, the changed
// changelog keys and the consumer offsets are written in one Kafka
// transaction (franz-go's GroupTransactSession). When a transaction aborts
// (a rebalance, a broker error), the in-memory state is dropped and rebuilt
// from the changelog before the partition is processed again, so nothing is
// lost, duplicated or renumbered.
//
// Concurrency: Run owns the loop and every State; State itself is not safe
// for concurrent use. The partition callbacks of the group client only mark
// partitions for dropping, under a mutex.
package sequencer
