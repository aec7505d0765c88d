package main

import (
	"fmt"
	"log/slog"
	"strconv"
)

// autoMaxConnections is --max-connections "auto": derived at start from
// the open-file limit (maxConnections).
const autoMaxConnections = -1

// fdReserveMin and fdReserveShare size the file descriptors "auto" keeps
// for everything but websocket connections: at least fdReserveMin, or
// one in fdReserveShare of the limit when that is more. Beside the
// connections the process holds the embedded store's files (a writer and
// up to four readers, each with the database and its WAL, plus the
// lock), or the PostgreSQL pool (10 connections), the Redis pool (10 per
// CPU), the listeners, and one descriptor per plain HTTP request or idle
// keep-alive connection (NIP-11, NIP-86, /metrics, health checks).
const (
	fdReserveMin   = 256
	fdReserveShare = 10
)

func parseMaxConnections(s string) (int, error) {
	if s == "auto" {
		return autoMaxConnections, nil
	}
	n, err := strconv.ParseInt(s, 10, strconv.IntSize)
	if err != nil || n < 0 {
		return 0, fmt.Errorf(`want a whole number or "auto"`)
	}
	return int(n), nil
}

func formatMaxConnections(n int) string {
	if n == autoMaxConnections {
		return "auto"
	}
	return strconv.Itoa(n)
}

// fdReserve is how many of limit descriptors "auto" keeps for the rest.
func fdReserve(limit uint64) uint64 {
	return max(fdReserveMin, limit/fdReserveShare)
}

// maxConnections resolves --max-connections against the process's
// open-file limit (Go raises the soft limit to the hard one at start, so
// that is what systemd's LimitNOFILE or ulimit -Hn sets), and warns when
// an explicit cap leaves less than the reserve: past it, accepting a
// connection or opening a store file fails with EMFILE instead of a
// clean 503.
func maxConnections(cfg config, logger *slog.Logger) int {
	limit, known := openFileLimit()
	if !known {
		if cfg.MaxConnections == autoMaxConnections {
			logger.Warn("--max-connections auto: the open-file limit is unknown on this system; no connection cap")
			return 0
		}
		return cfg.MaxConnections
	}
	reserve := fdReserve(limit)
	room := 0
	if limit > reserve {
		room = int(min(limit-reserve, uint64(maxInt)))
	}
	switch {
	case cfg.MaxConnections == autoMaxConnections:
		if room == 0 {
			room = 1
		}
		logger.Info("connection cap", "max_connections", room, "open_file_limit", limit, "reserved", reserve)
		return room
	case cfg.MaxConnections > room:
		logger.Warn("--max-connections leaves the open-file limit less than its reserve: past the limit, accepts and store files fail with EMFILE instead of a clean 503",
			"max_connections", cfg.MaxConnections, "open_file_limit", limit, "reserve", reserve, "suggested", room)
	}
	return cfg.MaxConnections
}

const maxInt = int(^uint(0) >> 1)
