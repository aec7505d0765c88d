package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisLogEvery is how often one form of go-redis message is logged while
// it keeps coming: go-redis reports a failure on every attempt while Redis
// is away, and the relay's own fallbacks already say what that means.
const redisLogEvery = time.Minute

// redisLogger carries go-redis's own messages to the relay's logger (text
// or JSON, as configured), each form of message (its format) at most once
// per redisLogEvery, with how many times it came meanwhile.
type redisLogger struct {
	log   *slog.Logger
	now   func() time.Time
	mu    sync.Mutex
	forms map[string]*redisLogForm
}

type redisLogForm struct {
	last       time.Time
	suppressed int
}

// useRedisLogger points go-redis at the relay's logger. go-redis has one
// logger for the whole process, so this is process-wide.
func useRedisLogger(log *slog.Logger) {
	redis.SetLogger(newRedisLogger(log, time.Now))
}

func newRedisLogger(log *slog.Logger, now func() time.Time) *redisLogger {
	return &redisLogger{log: log.With("component", "go-redis"), now: now, forms: map[string]*redisLogForm{}}
}

// Printf is go-redis's logging interface.
func (l *redisLogger) Printf(ctx context.Context, format string, v ...any) {
	now := l.now()
	l.mu.Lock()
	f, ok := l.forms[format]
	if !ok {
		f = &redisLogForm{}
		l.forms[format] = f
	}
	if ok && now.Sub(f.last) < redisLogEvery {
		f.suppressed++
		l.mu.Unlock()
		return
	}
	suppressed := f.suppressed
	f.last, f.suppressed = now, 0
	l.mu.Unlock()
	attrs := []any{}
	if suppressed > 0 {
		attrs = append(attrs, "repeated_since_last", suppressed)
	}
	l.log.WarnContext(ctx, fmt.Sprintf(format, v...), attrs...)
}
