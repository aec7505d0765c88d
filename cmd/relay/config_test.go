package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/burrow-relay/burrow/policy"
	"github.com/burrow-relay/burrow/storage/sqlite"
	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestParseServeConfig(t *testing.T) {
	admin := strings.Repeat("ab", 32)
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(t *testing.T, c config)
		err   string // substring of the error; empty means success
	}{
		{name: "defaults serve embedded SQLite on loopback", check: func(t *testing.T, c config) {
			if c.Listen != "127.0.0.1:3334" || c.DataDir != "./data" || c.DatabaseURL != "" {
				t.Fatalf("defaults: %+v", c)
			}
			if c.Limits != policy.DefaultLimits() {
				t.Fatalf("limits %+v, want defaults", c.Limits)
			}
			if c.Kinds.String() != "all" {
				t.Fatalf("kinds %s", c.Kinds)
			}
		}},
		{name: "environment twins are read", env: map[string]string{
			"RELAY_LISTEN": "127.0.0.1:9999", "RELAY_DATA_DIR": "/tmp/x", "RELAY_ADMIN_PUBKEYS": admin,
			"RELAY_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1", "RELAY_KINDS": "marmot", "RELAY_MAX_LIMIT": "50",
			"RELAY_DATABASE_URL": "postgres://u:secret@localhost/db", "RELAY_REDIS_URL": "redis://localhost:6379/1",
		}, check: func(t *testing.T, c config) {
			if c.Listen != "127.0.0.1:9999" || c.DataDir != "/tmp/x" || c.Limits.MaxLimit != 50 {
				t.Fatalf("env not applied: %+v", c)
			}
			if len(c.Admins) != 1 || c.Admins[0] != admin {
				t.Fatalf("admins %v", c.Admins)
			}
			want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}
			if len(c.TrustedProxies) != 2 || c.TrustedProxies[0] != want[0] || c.TrustedProxies[1] != want[1] {
				t.Fatalf("proxies %v", c.TrustedProxies)
			}
			if c.Kinds.String() != "marmot" || c.Kinds.Allows(1) || !c.Kinds.Allows(445) {
				t.Fatalf("kinds %v", c.Kinds)
			}
			if c.DatabaseURL == "" || c.RedisURL == "" {
				t.Fatal("urls not applied")
			}
		}},
		{name: "RELAY_ADMIN is --admin's variable and wins over the deprecated RELAY_ADMIN_PUBKEYS", env: map[string]string{
			"RELAY_ADMIN": admin, "RELAY_ADMIN_PUBKEYS": strings.Repeat("cd", 32),
		}, check: func(t *testing.T, c config) {
			if len(c.Admins) != 1 || c.Admins[0] != admin {
				t.Fatalf("admins %v, want [%s]", c.Admins, admin)
			}
		}},
		{name: "a flag wins over its variable", args: []string{"--listen", "127.0.0.1:1"},
			env: map[string]string{"RELAY_LISTEN": "127.0.0.1:2"},
			check: func(t *testing.T, c config) {
				if c.Listen != "127.0.0.1:1" {
					t.Fatalf("listen %s", c.Listen)
				}
			}},
		{name: "limits and durations parse", args: []string{"--write-timeout", "3s", "--event-rate", "12.5", "--outbound-queue", "4096"},
			check: func(t *testing.T, c config) {
				if c.Limits.WriteTimeout != 3*time.Second || c.Limits.EventRate != 12.5 || c.Limits.OutboundQueue != 4096 {
					t.Fatalf("limits %+v", c.Limits)
				}
			}},
		{name: "abuse limits parse from flags and variables", args: []string{
			"--conn-event-rate", "7", "--conn-event-burst", "70", "--request-rate", "8", "--request-burst", "80",
			"--conn-request-rate", "9", "--conn-request-burst", "90", "--ipv6-prefix", "56", "--max-filter-values", "100",
			"--max-filter-values-per-ip", "1000", "--max-queries-per-ip", "3", "--count-timeout", "2s",
			"--outbound-bytes", "1048576", "--outbound-total-bytes", "67108864", "--ping-interval", "5s", "--pong-timeout", "20s",
		}, env: map[string]string{"RELAY_HTTP_READ_TIMEOUT": "11s", "RELAY_HTTP_WRITE_TIMEOUT": "12s", "RELAY_HTTP_IDLE_TIMEOUT": "13s"},
			check: func(t *testing.T, c config) {
				l := c.Limits
				if l.ConnEventRate != 7 || l.ConnEventBurst != 70 || l.RequestRate != 8 || l.RequestBurst != 80 ||
					l.ConnRequestRate != 9 || l.ConnRequestBurst != 90 || l.IPv6PrefixBits != 56 || l.MaxFilterValues != 100 ||
					l.MaxFilterValuesPerIP != 1000 || l.MaxQueriesPerIP != 3 || l.CountTimeout != 2*time.Second ||
					l.OutboundBytes != 1<<20 || l.OutboundTotalBytes != 64<<20 || l.PingInterval != 5*time.Second || l.PongTimeout != 20*time.Second {
					t.Fatalf("limits %+v", l)
				}
				if c.HTTPReadTimeout != 11*time.Second || c.HTTPWriteTimeout != 12*time.Second || c.HTTPIdleTimeout != 13*time.Second {
					t.Fatalf("HTTP timeouts %v %v %v", c.HTTPReadTimeout, c.HTTPWriteTimeout, c.HTTPIdleTimeout)
				}
			}},
		{name: "HTTP timeouts default to 30s, 30s and 60s", check: func(t *testing.T, c config) {
			if c.HTTPReadTimeout != 30*time.Second || c.HTTPWriteTimeout != 30*time.Second || c.HTTPIdleTimeout != time.Minute {
				t.Fatalf("HTTP timeouts %v %v %v", c.HTTPReadTimeout, c.HTTPWriteTimeout, c.HTTPIdleTimeout)
			}
		}},
		{name: "zero HTTP idle timeout", args: []string{"--http-idle-timeout", "0s"}, err: "--http-idle-timeout"},
		{name: "IPv6 prefix out of range", args: []string{"--ipv6-prefix", "0"}, err: "IPv6 prefix"},
		{name: "pong timeout not above the ping interval", args: []string{"--ping-interval", "30s", "--pong-timeout", "30s"}, err: "ping interval"},
		{name: "total outbound bytes below one connection's", args: []string{"--outbound-total-bytes", "1000000"}, err: "total outbound bytes"},
		{name: "KeyPackage slot cap and evict age default to 10 and 7 days", check: func(t *testing.T, c config) {
			if c.KeyPackageSlotCap != 10 || c.KeyPackageEvictAge != 168*time.Hour {
				t.Fatalf("slot cap %d, evict age %v", c.KeyPackageSlotCap, c.KeyPackageEvictAge)
			}
		}},
		{name: "KeyPackage settings read their variables", env: map[string]string{
			"RELAY_KEYPACKAGE_SLOT_CAP": "3", "RELAY_KEYPACKAGE_EVICT_AGE": "36h",
		}, check: func(t *testing.T, c config) {
			if c.KeyPackageSlotCap != 3 || c.KeyPackageEvictAge != 36*time.Hour {
				t.Fatalf("slot cap %d, evict age %v", c.KeyPackageSlotCap, c.KeyPackageEvictAge)
			}
		}},
		{name: "KeyPackage flags win over variables", args: []string{"--keypackage-slot-cap", "0", "--keypackage-evict-age", "1h"},
			env: map[string]string{"RELAY_KEYPACKAGE_SLOT_CAP": "3"},
			check: func(t *testing.T, c config) {
				if c.KeyPackageSlotCap != 0 || c.KeyPackageEvictAge != time.Hour {
					t.Fatalf("slot cap %d, evict age %v", c.KeyPackageSlotCap, c.KeyPackageEvictAge)
				}
			}},
		{name: "negative slot cap", args: []string{"--keypackage-slot-cap", "-1"}, err: "--keypackage-slot-cap"},
		{name: "KeyPackage hand-out is off by default with a 5m claim and 10 a minute", check: func(t *testing.T, c config) {
			if c.KeyPackageHandout || c.KeyPackageClaimTTL != 5*time.Minute || c.KeyPackageHandoutRate != 10 {
				t.Fatalf("hand-out %v, claim ttl %v, rate %v", c.KeyPackageHandout, c.KeyPackageClaimTTL, c.KeyPackageHandoutRate)
			}
		}},
		{name: "KeyPackage hand-out flags", args: []string{"--keypackage-handout", "--keypackage-claim-ttl", "30s", "--keypackage-handout-rate", "0"},
			check: func(t *testing.T, c config) {
				if !c.KeyPackageHandout || c.KeyPackageClaimTTL != 30*time.Second || c.KeyPackageHandoutRate != 0 {
					t.Fatalf("hand-out %v, claim ttl %v, rate %v", c.KeyPackageHandout, c.KeyPackageClaimTTL, c.KeyPackageHandoutRate)
				}
			}},
		{name: "KeyPackage hand-out variables", env: map[string]string{"RELAY_KEYPACKAGE_HANDOUT": "true", "RELAY_KEYPACKAGE_CLAIM_TTL": "1m"},
			check: func(t *testing.T, c config) {
				if !c.KeyPackageHandout || c.KeyPackageClaimTTL != time.Minute {
					t.Fatalf("hand-out %v, claim ttl %v", c.KeyPackageHandout, c.KeyPackageClaimTTL)
				}
			}},
		{name: "zero claim ttl", args: []string{"--keypackage-claim-ttl", "0s"}, err: "--keypackage-claim-ttl"},
		{name: "zero scrub bound", args: []string{"--keypackage-scrub-within", "0s"}, err: "--keypackage-scrub-within"},
		{name: "KeyPackage scrub bound", env: map[string]string{"RELAY_KEYPACKAGE_SCRUB_WITHIN": "1m"},
			check: func(t *testing.T, c config) {
				if c.KeyPackageScrubWithin != time.Minute {
					t.Fatalf("scrub within %v, want 1m", c.KeyPackageScrubWithin)
				}
			}},
		{name: "negative hand-out rate", args: []string{"--keypackage-handout-rate", "-1"}, err: "--keypackage-handout-rate"},
		{name: "bad hand-out variable names it", env: map[string]string{"RELAY_KEYPACKAGE_HANDOUT": "maybe"}, err: "RELAY_KEYPACKAGE_HANDOUT"},
		{name: "negative evict age", args: []string{"--keypackage-evict-age", "-1h"}, err: "--keypackage-evict-age"},
		{name: "bad evict age variable names it", env: map[string]string{"RELAY_KEYPACKAGE_EVICT_AGE": "a week"}, err: "RELAY_KEYPACKAGE_EVICT_AGE"},
		{name: "bad admin key", args: []string{"--admin", "npub1xyz"}, err: "--admin"},
		{name: "bad trusted proxy", args: []string{"--trusted-proxies", "not-an-ip"}, err: "--trusted-proxies"},
		{name: "bad kinds", args: []string{"--kinds", "some"}, err: "--kinds"},
		{name: "bad listen", args: []string{"--listen", "3334"}, err: "--listen"},
		{name: "database url must be postgres", args: []string{"--database-url", "mysql://u:pw@h/db"}, err: "want a postgres:// URL"},
		{name: "redis url must be redis", args: []string{"--redis-url", "http://h"}, err: "--redis-url"},
		{name: "service url must be websocket", args: []string{"--service-url", "https://relay.example"}, err: "--service-url"},
		{name: "bad env value names the variable", env: map[string]string{"RELAY_MAX_LIMIT": "many"}, err: "RELAY_MAX_LIMIT"},
		{name: "non-positive limit", args: []string{"--max-limit", "0"}, err: "max limit"},
		{name: "bad log level", args: []string{"--log-level", "loud"}, err: "--log-level"},
		{name: "stray argument", args: []string{"extra"}, err: "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseServeConfig(tt.args, env(tt.env), io.Discard)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one containing %q", err, tt.err)
				}
				if strings.Contains(err.Error(), "secret") {
					t.Fatalf("error leaks a password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestHelpDocumentsEveryFlagWithItsVariable(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, env(nil), &out, &errOut); code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errOut.String())
	}
	help := out.String()
	for _, want := range []string{
		"--listen", "RELAY_LISTEN", "--data-dir", "RELAY_DATA_DIR", "--database-url", "RELAY_DATABASE_URL",
		"--redis-url", "RELAY_REDIS_URL", "--admin", "RELAY_ADMIN", "RELAY_ADMIN_PUBKEYS is read too (deprecated)", "--trusted-proxies", "RELAY_TRUSTED_PROXIES",
		"--kinds", "RELAY_KINDS", "--max-limit", "RELAY_MAX_LIMIT", "--max-connections-per-ip", "--event-burst",
		"--outbound-queue", "relay conformance", "--keypackage-slot-cap", "RELAY_KEYPACKAGE_SLOT_CAP", "--keypackage-handout", "RELAY_KEYPACKAGE_HANDOUT",
		"--keypackage-evict-age", "RELAY_KEYPACKAGE_EVICT_AGE",
		"--conn-event-rate", "--request-rate", "RELAY_REQUEST_BURST", "--conn-request-burst", "--ipv6-prefix", "RELAY_IPV6_PREFIX",
		"--max-filter-values", "--max-filter-values-per-ip", "--max-queries-per-ip", "--count-timeout", "--outbound-bytes",
		"--outbound-total-bytes", "--ping-interval", "--pong-timeout", "--http-read-timeout", "--http-write-timeout",
		"--http-idle-timeout", "RELAY_HTTP_IDLE_TIMEOUT",
	} {
		if !strings.Contains(help, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}

// --help lists the flags by topic, in this order.
func TestHelpGroupsFlagsByTopic(t *testing.T) {
	var out bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, env(nil), &out, io.Discard); code != 0 {
		t.Fatalf("exit %d", code)
	}
	help := out.String()
	last := -1
	for _, title := range []string{"Listening and identity:", "Storage:", "Redis (several instances):", "KeyPackages:",
		"Group events (kind 445) and commit slots:", "Limits (see README, \"Limits and abuse\"):", "Logging:"} {
		i := strings.Index(help, "\n"+title+"\n")
		if i <= last {
			t.Fatalf("topic %q missing or out of order in --help", title)
		}
		last = i
	}
	sections := map[string]string{}
	for _, block := range strings.Split(help, "\n\n") {
		title, flags, _ := strings.Cut(block, "\n")
		sections[title] = flags
	}
	for topic, flag := range map[string]string{"Storage:": "--database-url", "KeyPackages:": "--keypackage-slot-cap", "Logging:": "--log-format"} {
		if !strings.Contains(sections[topic], "  "+flag+"  ") {
			t.Errorf("%s is not listed under %s", flag, topic)
		}
	}
}

func TestBadConfigurationExitsWithOneClearLine(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want []string // substrings of the single stderr line
		deny string   // must not appear
	}{
		{"unknown command", []string{"frobnicate"}, 2, []string{"unknown command"}, ""},
		{"bad flag value", []string{"--kinds", "nope"}, 2, []string{"--kinds"}, ""},
		{"duration the parser refuses", []string{"--group-retention", "90x"}, 2, []string{`--group-retention "90x": want a duration such as 90d`}, ""},
		{"number the parser refuses", []string{"--max-limit", "lots"}, 2, []string{`--max-limit "lots": want a whole number`}, ""},
		{"bool the parser refuses", []string{"--keypackage-handout=maybe"}, 2, []string{`--keypackage-handout "maybe": want true or false`}, ""},
		{"variable the parser refuses", []string{"ENV:RELAY_EVENT_RATE=fast"}, 2, []string{`RELAY_EVENT_RATE="fast" (for --event-rate): want a number`}, ""},
		{"unknown flag", []string{"--no-such-flag"}, 2, []string{"no-such-flag"}, ""},
		{"negative group retention", []string{"--group-retention", "-1h"}, 2, []string{"--group-retention"}, ""},
		{"group events larger than a message", []string{"--max-group-content-length", "600000"}, 2, []string{"max group content length"}, ""},
		{"unreachable database names the URL without its password", []string{
			"--listen", "127.0.0.1:0", "--database-url", "postgres://burrow:hunter2@127.0.0.1:1/burrow?connect_timeout=2",
		}, 1, []string{"127.0.0.1:1"}, "hunter2"},
		{"unreachable redis names the URL without its password", []string{
			"--listen", "127.0.0.1:0", "--data-dir", "TMP", "--redis-url", "redis://:pw9@127.0.0.1:1/0",
		}, 1, []string{"redis", "127.0.0.1:1", "unreachable"}, "pw9"},
		{"listen address taken", []string{"--listen", "TAKEN", "--data-dir", "TMP"}, 1, []string{"listen on"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := slices.Clone(tt.args)
			vars := map[string]string{}
			if len(args) > 0 && strings.HasPrefix(args[0], "ENV:") {
				k, v, _ := strings.Cut(strings.TrimPrefix(args[0], "ENV:"), "=")
				vars[k] = v
				args = args[1:]
			}
			for i, a := range args {
				switch a {
				case "TMP":
					args[i] = t.TempDir()
				case "TAKEN":
					ln, err := net.Listen("tcp", "127.0.0.1:0")
					if err != nil {
						t.Fatal(err)
					}
					defer ln.Close()
					args[i] = ln.Addr().String()
				}
			}
			var out, errOut bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			code := run(ctx, args, env(vars), &out, &errOut)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stderr %q", code, tt.code, errOut.String())
			}
			msg := errOut.String()
			lines := strings.Split(strings.TrimRight(msg, "\n"), "\n")
			if code == 2 && len(lines) != 1 {
				t.Errorf("bad usage printed %d lines, want one: %q", len(lines), msg)
			}
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "relay: ") {
				t.Fatalf("last line %q does not start with \"relay: \"", last)
			}
			for _, w := range tt.want {
				if !strings.Contains(last, w) {
					t.Errorf("%q lacks %q", last, w)
				}
			}
			if tt.deny != "" && strings.Contains(msg, tt.deny) {
				t.Errorf("stderr leaks %q: %q", tt.deny, msg)
			}
		})
	}
}

// Durations take days too, as operators write retention, and print whole
// days as days.
func TestDurations(t *testing.T) {
	const day = 24 * time.Hour
	for _, tt := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"90d", 90 * day, true}, {"1d12h", day + 12*time.Hour, true}, {"0d", 0, true},
		{"2160h", 90 * day, true}, {"30m", 30 * time.Minute, true}, {"0", 0, true},
		{"90x", 0, false}, {"d", 0, false}, {"1.5d", 0, false}, {"-1d", 0, false}, {"1d-2h", 0, false}, {"1dx", 0, false},
	} {
		got, err := parseDuration(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v (ok %v)", tt.in, got, err, tt.want, tt.ok)
		}
	}
	for d, want := range map[time.Duration]string{90 * day: "90d", 36 * time.Hour: "36h", 15 * time.Minute: "15m",
		90 * time.Second: "1m30s", time.Hour + time.Second: "1h0m1s", 10 * time.Second: "10s", 0: "0s", 1500 * time.Millisecond: "1.5s"} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
	c, err := parseServeConfig([]string{"--group-retention", "30d"}, env(nil), io.Discard)
	if err != nil || c.GroupRetention != 30*day {
		t.Fatalf("--group-retention 30d: %v, %v", c.GroupRetention, err)
	}
}

// TestKeyPackageHandoutEndToEnd runs --keypackage-handout on the embedded
// store with real, validated KeyPackages.
func TestKeyPackageHandoutEndToEnd(t *testing.T) {
	r := startLive(t, "sqlite", "--keypackage-handout", "--keypackage-claim-ttl", "2s")
	a := newAuthor(t)
	plain := func(d string, created nostr.Timestamp) nostr.Event {
		content, ref := a.keyPackage(t, false)
		return a.sign(t, 30443, content, nostr.Tags{{"d", d}, {"i", ref}, {"mls_ciphersuite", "0x0001"}, {"encoding", "base64"}}, created)
	}
	lastResort := a.slotEvent(t, slotID(0), nostr.Now()-30)
	older, newer := plain(slotID(1), nostr.Now()-20), plain(slotID(2), nostr.Now()-10)
	for _, ev := range []nostr.Event{lastResort, older, newer} {
		r.mustPublish(t, ev)
	}
	f := nostr.Filter{Kinds: []int{30443}, Authors: []string{a.pk}}
	if _, err := r.client.query(f, testTimeout); err == nil || !strings.Contains(err.Error(), "auth-required:") {
		t.Fatalf("unauthenticated hand-out: err = %v, want auth-required:", err)
	}

	authed := func(who author) *wsClient { return authedClient(t, r.ws, who) }
	sortedIDs := func(evs []nostr.Event) []string {
		var out []string
		for _, ev := range evs {
			out = append(out, ev.ID)
		}
		slices.Sort(out)
		return out
	}
	pair := func(a, b string) []string { s := []string{a, b}; slices.Sort(s); return s }
	alice, bob, carol := authed(newAuthor(t)), authed(newAuthor(t)), authed(newAuthor(t))
	steps := []struct {
		name string
		cl   *wsClient
		want []string
	}{
		{"alice gets the oldest plain one and the last resort", alice, pair(older.ID, lastResort.ID)},
		{"alice again gets the same", alice, pair(older.ID, lastResort.ID)},
		{"bob gets the other", bob, pair(newer.ID, lastResort.ID)},
		{"carol finds the supply exhausted", carol, []string{lastResort.ID}},
	}
	for _, s := range steps {
		evs, err := s.cl.query(f, testTimeout)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := sortedIDs(evs); !slices.Equal(got, s.want) {
			t.Fatalf("%s: got %v, want %v", s.name, got, s.want)
		}
	}

	// A REQ by ids is not a hand-out; the claimed ones go once claims end.
	byID := nostr.Filter{IDs: []string{lastResort.ID, older.ID, newer.ID}}
	deadline := time.Now().Add(testTimeout)
	for got := r.ids(t, byID); !slices.Equal(got, []string{lastResort.ID}); got = r.ids(t, byID) {
		if time.Now().After(deadline) {
			t.Fatalf("after the claim ttl stored %v, want the last resort only", got)
		}
		time.Sleep(50 * time.Millisecond)
	}

	var doc struct {
		KeyPackages struct {
			Handout map[string]any `json:"handout"`
		} `json:"keypackages"`
	}
	fetchNIP11(t, r.http, &doc)
	if h := doc.KeyPackages.Handout; h["enabled"] != true || h["claim_ttl_seconds"] != float64(2) {
		t.Fatalf("NIP-11 hand-out = %v", h)
	}
}

// authedClient connects to ws and authenticates as who with NIP-42 (the
// relay sends its challenge first).
func authedClient(t *testing.T, ws string, who author) *wsClient {
	t.Helper()
	return authedClientNaming(t, ws, ws, who)
}

// authedClientNaming is authedClient for a relay whose AUTH events must
// name relayURL (its --service-url).
func authedClientNaming(t *testing.T, ws, relayURL string, who author) *wsClient {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial(ws, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var challenge []string
	if err := c.ReadJSON(&challenge); err != nil || len(challenge) != 2 || challenge[0] != "AUTH" {
		t.Fatalf("challenge %v, %v", challenge, err)
	}
	ev := who.sign(t, 22242, "", nostr.Tags{{"relay", relayURL}, {"challenge", challenge[1]}}, 0)
	if err := c.WriteJSON([]any{"AUTH", ev}); err != nil {
		t.Fatal(err)
	}
	var ok []any
	if err := c.ReadJSON(&ok); err != nil || len(ok) < 3 || ok[0] != "OK" || ok[2] != true {
		t.Fatalf("AUTH answer %v, %v", ok, err)
	}
	return &wsClient{c: c}
}

// TestKeyPackageHandoutAcrossInstances runs the hand-out on two relay
// processes sharing PostgreSQL: requesters racing on both instances never
// get one KeyPackage twice, two simultaneous REQs of one requester (one on
// each instance) get one KeyPackage between them, and a KeyPackage
// published as twins is handed out once.
func TestKeyPackageHandoutAcrossInstances(t *testing.T) {
	bin := buildRelay(t)
	db := testsvc.Postgres(t).URL
	var instances []string
	for range 2 {
		addr := freeAddr(t)
		startProcess(t, bin, addr, "--database-url", db, "--keypackage-handout", "--keypackage-handout-rate", "0")
		instances = append(instances, "ws://"+addr)
	}
	au := newAuthor(t)
	pub, err := dial(context.Background(), instances[0])
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	var offered []nostr.Event
	for i := range 6 {
		content, ref := au.keyPackage(t, false)
		ev := au.sign(t, 30443, content, nostr.Tags{{"d", slotID(i)}, {"i", ref}, {"mls_ciphersuite", "0x0001"}, {"encoding", "base64"}}, nostr.Now()-nostr.Timestamp(60-i))
		offered = append(offered, ev)
	}
	// The first KeyPackage also as a 443 twin: still one KeyPackage.
	offered = append(offered, au.legacyTwin(t, offered[0], false, nostr.Now()-100))
	for _, ev := range offered {
		if ok, msg, err := pub.publish(ev, testTimeout); err != nil || !ok {
			t.Fatalf("publish: %v %q %v", ok, msg, err)
		}
	}
	f := nostr.Filter{Kinds: []int{443, 30443}, Authors: []string{au.pk}}
	handOut := func(c *wsClient) []string {
		evs, err := c.query(f, testTimeout)
		if err != nil {
			t.Error(err)
			return nil
		}
		var out []string
		for _, ev := range evs {
			out = append(out, ev.Content) // twins share it
		}
		return out
	}
	// Four requesters on alternate instances, each asking twice at once
	// (one REQ on each instance).
	requesters := []author{newAuthor(t), newAuthor(t), newAuthor(t), newAuthor(t)}
	conns := make([][2]*wsClient, len(requesters))
	for i, who := range requesters {
		conns[i] = [2]*wsClient{authedClient(t, instances[0], who), authedClient(t, instances[1], who)}
	}
	got := make([][2][]string, len(requesters))
	var wg sync.WaitGroup
	for i := range requesters {
		for j := range 2 {
			wg.Go(func() { got[i][j] = handOut(conns[i][j]) })
		}
	}
	wg.Wait()
	holder := map[string]int{}
	for i, pair := range got {
		if len(pair[0]) != 1 || len(pair[1]) != 1 {
			t.Fatalf("requester %d got %d and %d KeyPackages, want one from each REQ", i, len(pair[0]), len(pair[1]))
		}
		if pair[0][0] != pair[1][0] {
			t.Fatalf("requester %d got two KeyPackages from simultaneous REQs on two instances", i)
		}
		if other, ok := holder[pair[0][0]]; ok {
			t.Fatalf("requesters %d and %d were handed the same KeyPackage", other, i)
		}
		holder[pair[0][0]] = i
	}
	// Six KeyPackages, four handed out: two remain for a fifth and sixth,
	// and a seventh requester finds none (the twin is no seventh).
	for i := range 2 {
		kps := handOut(authedClient(t, instances[1], newAuthor(t)))
		if len(kps) != 1 {
			t.Fatalf("a later requester got %d KeyPackages, want 1", len(kps))
		}
		if other, ok := holder[kps[0]]; ok {
			t.Fatalf("a later requester was handed requester %d's KeyPackage", other)
		}
		holder[kps[0]] = len(requesters) + i
	}
	if kps := handOut(authedClient(t, instances[0], newAuthor(t))); len(kps) != 0 {
		t.Fatalf("the seventh requester got %d KeyPackages, want none", len(kps))
	}
}

// TestVersion: --version and relay version print the version, the commit,
// the Go version, the verifier and the store's schema version, and change
// nothing; a store the relay has created reports the newest schema.
func TestVersion(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{{"--version", "--data-dir", dir}, {"version", "--data-dir", dir}} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), args, env(nil), &out, &errOut); code != 0 {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errOut.String())
		}
		for _, want := range []string{"relay " + version, "commit:", "go:       " + runtime.Version(), "verifier: " + signatureVerifier, "schema 0 (this binary: "} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%v: output lacks %q:\n%s", args, want, out.String())
			}
		}
		if _, err := os.Stat(filepath.Join(dir, "relay.db")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%v created the database (%v)", args, err)
		}
	}
	s, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(dir, "relay.db")})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, latest, err := sqlite.SchemaVersion(context.Background(), filepath.Join(dir, "relay.db"))
	if err != nil || latest == 0 {
		t.Fatalf("SchemaVersion: %d, %v", latest, err)
	}
	var out bytes.Buffer
	if code := run(context.Background(), []string{"version", "--data-dir", dir}, env(nil), &out, io.Discard); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if want := fmt.Sprintf("schema %d (this binary: %d; up to date)", latest, latest); !strings.Contains(out.String(), want) {
		t.Errorf("output lacks %q:\n%s", want, out.String())
	}
	var errOut bytes.Buffer
	if code := run(context.Background(), []string{"version", "--database-url", "postgres://u:secretpw@127.0.0.1:1/x?connect_timeout=2"}, env(nil), &out, &errOut); code != 1 || strings.Contains(out.String()+errOut.String(), "secretpw") {
		t.Errorf("unreachable database: exit %d (want 1), output %q %q", code, out.String(), errOut.String())
	}
}

// TestOneProcessPerDataDir: a second relay on a --data-dir another one
// holds is refused with a line saying so; once the first stops, it starts.
func TestOneProcessPerDataDir(t *testing.T) {
	dir := t.TempDir()
	start := func() (*runningRelay, error) {
		c, err := parseServeConfig([]string{"--listen", "127.0.0.1:0", "--data-dir", dir}, env(nil), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		return startRelay(context.Background(), c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}
	first, err := start()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := start(); !errors.Is(err, errDataDirInUse) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("second relay on the same --data-dir: %v, want %v naming this process", err, errDataDirInUse)
	}
	if err := first.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	second, err := start()
	if err != nil {
		t.Fatalf("after the first stopped: %v", err)
	}
	second.Close(context.Background())
}

// TestHealthcheck: relay healthcheck asks /readyz at --listen (or
// RELAY_LISTEN, as the image sets it; a wildcard host is asked on
// loopback) and exits 0 when ready, 1 when nothing answers.
func TestHealthcheck(t *testing.T) {
	c, err := parseServeConfig([]string{"--listen", "127.0.0.1:0", "--data-dir", t.TempDir()}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	r, err := startRelay(context.Background(), c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	_, port, _ := net.SplitHostPort(r.Addr)
	for _, tt := range []struct {
		args []string
		vars map[string]string
	}{
		{[]string{"healthcheck", "--listen", r.Addr}, nil},
		{[]string{"healthcheck"}, map[string]string{"RELAY_LISTEN": "0.0.0.0:" + port}},
	} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), tt.args, env(tt.vars), &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "ready: ") {
			t.Errorf("%v %v: exit %d, %q %q", tt.args, tt.vars, code, out.String(), errOut.String())
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	var errOut bytes.Buffer
	if code := run(context.Background(), []string{"healthcheck", "--listen", dead, "--timeout", "2s"}, env(nil), io.Discard, &errOut); code != 1 || !strings.Contains(errOut.String(), "healthcheck http://"+dead+"/readyz") {
		t.Errorf("nothing listening: exit %d, %q; want 1 and a line naming the URL", code, errOut.String())
	}
}

// Every command's help lists its flags the same way: "--name  (env VAR)",
// then the description with the default.
func TestEveryCommandsHelpHasOneStyle(t *testing.T) {
	line := regexp.MustCompile(`^  --[a-z0-9-]+  \(env RELAY_[A-Z0-9_]+\)$`)
	for _, cmd := range [][]string{{"--help"}, {"conformance", "--help"}, {"bench", "--help"}, {"harness", "--help"},
		{"selftest", "--help"}, {"healthcheck", "--help"}, {"backup", "--help"}} {
		var out bytes.Buffer
		if code := run(context.Background(), cmd, env(nil), &out, io.Discard); code != 0 {
			t.Fatalf("%v: exit %d", cmd, code)
		}
		flags := 0
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.HasPrefix(l, "  -") {
				flags++
				if !line.MatchString(l) {
					t.Errorf("%v: flag line %q is not in the common style", cmd, l)
				}
			}
		}
		if flags == 0 {
			t.Errorf("%v printed no flags:\n%s", cmd, out.String())
		}
	}
}
