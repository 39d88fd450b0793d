package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/causeway/causeway/pipeline"
)

// kafkaCheckTimeout bounds the start-up connection check of a role.
const kafkaCheckTimeout = 15 * time.Second

// checkKafka connects once as a role starts, next to it in its errgroup.
// Wrong credentials or certificates would otherwise show only as
// connections closed again and again (a bare EOF in the logs, forever):
// they stop the role with an error naming the keys to check. A broker
// that is merely unreachable is logged; the role waits for it anyway.
func checkKafka(ctx context.Context, kc pipeline.KafkaConfig, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, kafkaCheckTimeout)
	defer cancel()
	err := kc.Ping(ctx)
	var setup *pipeline.SetupError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &setup):
		return err
	default:
		log.Warn("kafka not reachable yet; starting and retrying", "err", err)
		return nil
	}
}
