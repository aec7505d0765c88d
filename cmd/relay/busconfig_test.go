package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestClaimAndBusFlags: the flags of issue 14 items 7 and 9 have their
// documented defaults and environment twins, are in --help, and bad
// values are refused with one line naming the flag.
func TestClaimAndBusFlags(t *testing.T) {
	c, err := parseServeConfig(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.GroupClaimRate != 10 || c.GroupClaimBurst != 500 || c.RedisPrefix != "" || c.RedisBusRetention != time.Minute {
		t.Fatalf("defaults: rate %v burst %d prefix %q retention %v", c.GroupClaimRate, c.GroupClaimBurst, c.RedisPrefix, c.RedisBusRetention)
	}
	c, err = parseServeConfig(nil, env(map[string]string{
		"RELAY_GROUP_CLAIM_RATE": "2.5", "RELAY_GROUP_CLAIM_BURST": "7", "RELAY_REDIS_PREFIX": "prod:", "RELAY_REDIS_BUS_RETENTION": "5m",
	}), io.Discard)
	if err != nil || c.GroupClaimRate != 2.5 || c.GroupClaimBurst != 7 || c.RedisPrefix != "prod:" || c.RedisBusRetention != 5*time.Minute {
		t.Fatalf("environment twins: %+v, %v", c, err)
	}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, env(nil), &out, &errOut); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, want := range []string{"--group-claim-rate", "RELAY_GROUP_CLAIM_RATE", "--group-claim-burst", "--redis-prefix", "RELAY_REDIS_PREFIX", "--redis-bus-retention"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	for _, args := range [][]string{{"--group-claim-rate", "0"}, {"--group-claim-burst", "-1"}, {"--redis-bus-retention", "0s"}, {"--redis-prefix", "a b"}} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), args, env(nil), &out, &errOut); code != 2 || !strings.Contains(errOut.String(), args[0]) {
			t.Errorf("%v: exit %d, stderr %q; want 2 naming the flag", args, code, errOut.String())
		}
	}
}

// TestRedisPrefixDiffersByDatabase: with no --redis-prefix, deployments on
// different Redis databases get different prefixes (so different bus
// streams and rate-limit buckets); --redis-prefix wins.
func TestRedisPrefixDiffersByDatabase(t *testing.T) {
	var cfg config
	for db, want := range map[int]string{0: "burrow:0:", 1: "burrow:1:", 15: "burrow:15:"} {
		c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DB: db})
		if got := redisPrefix(cfg, c); got != want {
			t.Errorf("database %d: prefix %q, want %q", db, got, want)
		}
		c.Close()
	}
	cfg.RedisPrefix = "mine:"
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DB: 3})
	defer c.Close()
	if got := redisPrefix(cfg, c); got != "mine:" {
		t.Errorf("--redis-prefix mine: gave %q", got)
	}
}
