package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// go-redis's messages reach the relay's logger in its format (JSON stays
// JSON), and a failure repeated on every attempt is logged once per
// redisLogEvery, with the count of the repeats.
func TestRedisLoggerKeepsFormatAndReportsOnce(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1_700_000_000, 0)
	l := newRedisLogger(slog.New(slog.NewJSONHandler(&buf, nil)), func() time.Time { return now })
	const dial = "redis: connection pool: failed to dial after %d attempts: %v"
	for i := range 100 {
		l.Printf(context.Background(), dial, i, "connection refused")
		now = now.Add(100 * time.Millisecond) // 10 s in all
	}
	l.Printf(context.Background(), "redis: another message %s", "x")
	now = now.Add(redisLogEvery)
	l.Printf(context.Background(), dial, 101, "connection refused")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3 (the first failure, the other message, the failure a minute later):\n%s", len(lines), buf.String())
	}
	var entries []map[string]any
	for _, line := range lines {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("not JSON: %q: %v", line, err)
		}
		entries = append(entries, e)
	}
	if e := entries[0]; e["msg"] != "redis: connection pool: failed to dial after 0 attempts: connection refused" || e["component"] != "go-redis" || e["level"] != "WARN" {
		t.Errorf("first entry %v", e)
	}
	if _, ok := entries[1]["repeated_since_last"]; ok {
		t.Errorf("a new message carries a repeat count: %v", entries[1])
	}
	if got := entries[2]["repeated_since_last"]; got != float64(99) {
		t.Errorf("repeated_since_last = %v, want 99", got)
	}
}
