package edge

import (
	"context"
	"log/slog"
	"slices"
)

// lazyAttrs is a connection's logger handler: it adds the connection's
// attributes (session, user) to a record when one is logged, instead of
// preformatting them when the logger is made, as slog's handlers do. Most
// connections never log, and a preformatted logger costs about 0.7 KB of
// every idle connection (issue 8: memory per idle connection).
type lazyAttrs struct {
	h     slog.Handler
	attrs []slog.Attr
}

func connLogger(base *slog.Logger, attrs ...any) *slog.Logger {
	return slog.New(lazyAttrs{h: base.Handler()}).With(attrs...)
}

func (l lazyAttrs) Enabled(ctx context.Context, level slog.Level) bool {
	return l.h.Enabled(ctx, level)
}

func (l lazyAttrs) Handle(ctx context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(l.attrs...)
	return l.h.Handle(ctx, r)
}

func (l lazyAttrs) WithAttrs(attrs []slog.Attr) slog.Handler {
	return lazyAttrs{h: l.h, attrs: append(slices.Clip(l.attrs), attrs...)}
}

// WithGroup nests what follows, so the attributes so far are fixed first.
func (l lazyAttrs) WithGroup(name string) slog.Handler {
	return l.h.WithAttrs(l.attrs).WithGroup(name)
}
