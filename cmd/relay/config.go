package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/burrow-relay/burrow/keypackages"
	"github.com/burrow-relay/burrow/ordering/redisbus"
	"github.com/burrow-relay/burrow/policy"
	"github.com/burrow-relay/burrow/storage/postgres"
	"github.com/nbd-wtf/go-nostr"
)

// config is everything `relay serve` needs; parseServeConfig fills it from
// flags and their RELAY_* environment twins.
type config struct {
	Listen string
	// MetricsListen, when set, is the address of a second listener that
	// alone serves /metrics and the NIP-86 management API (the public one
	// answers them 404).
	MetricsListen   string
	DataDir         string
	SQLiteSync      string
	DatabaseURL     string
	RedisURL        string
	Admins          []string
	TrustedProxies  []netip.Prefix
	Kinds           policy.Kinds
	Limits          policy.Limits
	Name            string
	Description     string
	ServiceURL      string
	LogLevel        slog.Level
	LogFormat       string
	ShutdownTimeout time.Duration
	// HTTPReadTimeout, HTTPWriteTimeout and HTTPIdleTimeout bound plain
	// HTTP requests (NIP-11, NIP-86, metrics) and idle keep-alive
	// connections; websocket connections have their own deadlines.
	HTTPReadTimeout  time.Duration
	HTTPWriteTimeout time.Duration
	HTTPIdleTimeout  time.Duration
	// KeyPackageSlotCap and KeyPackageEvictAge are the per-author
	// KeyPackage cap and the age a KeyPackage must reach before a new one
	// evicts it (keypackages.Policy).
	KeyPackageSlotCap  int
	KeyPackageEvictAge time.Duration
	// KeyPackageScrubWithin bounds, on PostgreSQL, how long a deleted
	// KeyPackage's bytes stay in the database files
	// (postgres.Config.KeyPackageRewriteWithin).
	KeyPackageScrubWithin time.Duration
	// KeyPackageHandout turns on the single-use KeyPackage hand-out
	// (keypackages.Handout): claims last KeyPackageClaimTTL, and each
	// requester gets KeyPackageHandoutRate hand-outs per minute (0 = no
	// limit).
	KeyPackageHandout     bool
	KeyPackageClaimTTL    time.Duration
	KeyPackageHandoutRate float64
	// GroupRetention is how long kind 445 events are kept (0: until
	// deleted otherwise).
	GroupRetention time.Duration
	// Negentropy serves NIP-77 set reconciliation (server.Config).
	Negentropy bool
	// GroupClaimRate and GroupClaimBurst are the per-group bucket of
	// commit-slot claims (ordering.Slots.Claims).
	GroupClaimRate  float64
	GroupClaimBurst int
	// RedisPrefix starts every Redis key of the deployment: the bus's
	// stream and the rate limits' buckets ("" until parsed: derived from
	// the --redis-url database number).
	RedisPrefix string
	// RedisBusRetention is how long the bus's stream keeps frames for an
	// instance that fell behind (redisbus.Config.Retention).
	RedisBusRetention time.Duration
	// MaxConnections caps the process's open websocket connections:
	// autoMaxConnections (-1, "auto") derives it from the file-descriptor
	// limit at start; 0 is no cap.
	MaxConnections int
	// busQueueBytes, for tests, bounds the bus's outgoing queue in bytes
	// (0: redisbus's default). No flag.
	busQueueBytes int64
	// disableSequencing stores kind 445 without seq numbers, as a plain
	// relay would (the stores' Config.DisableSequencing). No flag: only
	// relay bench sets it, for the unsequenced baseline it compares with.
	disableSequencing bool
}

// errHelp is returned when --help was asked for: usage goes to stdout and the
// exit status is 0.
var errHelp = errors.New("help requested")

const serveSynopsis = `Usage: relay [serve] [flags]

Burrow serves a Nostr relay for MLS group messaging (Marmot). With no flags it
keeps its data in embedded SQLite under ./data and listens on 127.0.0.1:3334.
Every flag has an environment twin (shown beside it); a flag given on the
command line wins over its variable.

Other commands (each takes --help): relay version (version, commit, store
schema), relay healthcheck (asks a running relay's /readyz), relay backup
(copies the embedded store without its KeyPackages), relay sync --from
ws://... (pulls over NIP-77 what another relay holds and this store lacks),
relay selftest, relay harness (group simulations against any relay),
relay conformance --relay ws://... (conformance suite against any relay),
relay bench (ingest benchmark), relay help.`

// rawServe holds the flags that are parsed further after flag parsing.
type rawServe struct{ admins, proxies, kinds, level string }

// serveFlags registers every serve flag on a new set, writing into cfg and
// raw; parsing and usage share this one list.
func serveFlags(cfg *config, raw *rawServe) *envFlags {
	def := policy.DefaultLimits()
	f := newEnvFlags("relay serve")
	l := &cfg.Limits

	f.section("Listening and identity")
	f.String(&cfg.Listen, "listen", "127.0.0.1:3334", "address to listen on, host:port")
	f.String(&cfg.MetricsListen, "metrics-listen", "", "host:port of a second listener that alone serves /metrics and the NIP-86 management API (with /healthz and /readyz); the public listener then answers them 404 (default: both on --listen)")
	f.String(&cfg.ServiceURL, "service-url", "", "public ws:// or wss:// URL of the relay, checked in NIP-42 AUTH and NIP-86 (default: derived from each request's Host)")
	f.String(&cfg.Name, "name", "Burrow", "relay name shown in NIP-11")
	f.String(&cfg.Description, "description", "A Nostr relay for MLS group messaging (Marmot).", "relay description shown in NIP-11")
	f.Var(stringValue{&raw.kinds}, "kinds", envName("kinds"), `accepted event kinds: "all", or "marmot" for 0, 5, 62, 443, 30443, 445, 1059, 10002, 10050, 10051, 20445 (default all)`)
	f.Var(stringValue{&raw.admins}, "admin", envName("admin"), "comma-separated hex pubkeys allowed to use the NIP-86 management API")
	f.deprecate("admin", "RELAY_ADMIN_PUBKEYS")
	f.Var(stringValue{&raw.proxies}, "trusted-proxies", envName("trusted-proxies"), "comma-separated IPs or CIDRs whose X-Forwarded-For header is believed")
	f.Duration(&cfg.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "how long SIGINT/SIGTERM waits for in-flight writes before closing connections")
	f.Duration(&cfg.HTTPReadTimeout, "http-read-timeout", 30*time.Second, "longest time to read a plain HTTP request, body included (not websocket traffic)")
	f.Duration(&cfg.HTTPWriteTimeout, "http-write-timeout", 30*time.Second, "longest time to write a plain HTTP response (not websocket traffic)")
	f.Duration(&cfg.HTTPIdleTimeout, "http-idle-timeout", 60*time.Second, "how long an idle HTTP keep-alive connection stays open")

	f.section("Storage")
	f.String(&cfg.DataDir, "data-dir", "./data", "directory of the embedded SQLite database (unused with --database-url)")
	f.String(&cfg.SQLiteSync, "sqlite-synchronous", "full", "embedded SQLite durability: full (every acknowledged event survives power loss) or normal (survives a process kill; power loss may lose the last acknowledged events)")
	f.String(&cfg.DatabaseURL, "database-url", "", "postgres:// URL to use PostgreSQL instead of embedded SQLite")

	f.section("Redis (several instances)")
	f.String(&cfg.RedisURL, "redis-url", "", "redis:// URL for coordination between several instances (optional; checked at start)")
	f.String(&cfg.RedisPrefix, "redis-prefix", "", `prefix of every Redis key of this deployment: the event bus's stream and the rate limits (default "burrow:<database number of --redis-url>:"); deployments sharing a Redis database need different prefixes`)
	f.Duration(&cfg.RedisBusRetention, "redis-bus-retention", redisbus.DefaultRetention, "how long the Redis event bus keeps events for an instance that lost Redis for a while (it reads on from where it stopped); Redis holds about this much of the deployment's traffic")

	f.section("KeyPackages")
	f.Int(&cfg.KeyPackageSlotCap, "keypackage-slot-cap", keypackages.DefaultSlotCap, "most KeyPackages per author, kinds 443 and 30443 alike, twins counted once; at the cap a new KeyPackage evicts the least recently refreshed one if it is older than --keypackage-evict-age, else it is refused (0 = no cap)")
	f.Duration(&cfg.KeyPackageEvictAge, "keypackage-evict-age", keypackages.DefaultEvictAfter, "how long a KeyPackage must go unrefreshed before a new one at the cap may evict it")
	f.Duration(&cfg.KeyPackageScrubWithin, "keypackage-scrub-within", 10*time.Second, "on PostgreSQL, how soon after a KeyPackage deletion the content partition that held it is rewritten, so the deleted bytes leave the files (a relay with many deletions a second may raise it to spend less of the database on rewrites)")
	f.Bool(&cfg.KeyPackageHandout, "keypackage-handout", false, "hand out KeyPackages once, as RFC 9750's Delivery Service does: an authenticated REQ for authors' kinds 443/30443 gets one unclaimed non-last-resort KeyPackage per author plus the last-resort ones, and the handed-out one is deleted after --keypackage-claim-ttl (off by default: Marmot clients choose KeyPackages themselves)")
	f.Duration(&cfg.KeyPackageClaimTTL, "keypackage-claim-ttl", keypackages.DefaultClaimTTL, "with --keypackage-handout, how long a handed-out KeyPackage stays claimed for its requester before it is deleted")
	f.Float64(&cfg.KeyPackageHandoutRate, "keypackage-handout-rate", 10, "with --keypackage-handout, KeyPackage hand-outs per minute per authenticated requester, also the burst (0 = no limit)")

	f.section("Group events (kind 445) and commit slots")
	f.Duration(&cfg.GroupRetention, "group-retention", 90*24*time.Hour, "how long kind 445 group events are kept; older ones are deleted by the sweeper and refused on arrival (0 = keep them; their seq numbers are never reused either way)")
	f.Int(&l.MaxGroupContentLength, "max-group-content-length", def.MaxGroupContentLength, "largest kind 445 group event content, bytes (advertised in NIP-11 as group_events.max_content_length)")
	f.Float64(&l.GroupRate, "group-rate", def.GroupRate, "sustained kind 445 events per second per group (h), from all addresses together; commit-slot claims draw from --group-claim-rate instead")
	f.Int(&l.GroupBurst, "group-burst", def.GroupBurst, "kind 445 events one group (h) may receive at once")
	f.Float64(&cfg.GroupClaimRate, "group-claim-rate", defaultGroupClaimRate, "sustained commit-slot claims (kind 20445) per second per group (h), from all addresses together; a claim may open a new slot, so any key can make one (in Redis when --redis-url is set)")
	f.Int(&cfg.GroupClaimBurst, "group-claim-burst", defaultGroupClaimBurst, "commit-slot claims one group (h) may receive at once")

	f.section("History repair (NIP-77 negentropy)")
	f.Bool(&cfg.Negentropy, "negentropy", true, "serve NIP-77 set reconciliation (NEG-OPEN, NEG-MSG, NEG-CLOSE) and advertise 77 in NIP-11")
	f.Int(&l.NegMaxIDs, "neg-max-ids", def.NegMaxIDs, "most events one reconciliation may cover (the REQ clamp does not apply); a NEG-OPEN whose filter matches more gets NEG-ERR blocked:")
	f.Int(&l.NegSessions, "neg-sessions", def.NegSessions, "reconciliations open at once on one connection")
	f.Int(&l.NegBytes, "neg-bytes", def.NegBytes, "memory the open reconciliations of one connection may hold, bytes (40 per event, plus 64 KiB per reconciliation)")
	f.Int(&l.NegBytesPerIP, "neg-bytes-per-ip", def.NegBytesPerIP, "memory the open reconciliations of all connections from one address may hold, bytes")
	f.Duration(&l.NegIdleTimeout, "neg-idle-timeout", def.NegIdleTimeout, "a reconciliation without a NEG-MSG for this long is closed (NEG-ERR closed:)")

	f.section("Limits (see README, \"Limits and abuse\")")
	f.Int(&l.MaxMessageLength, "max-message-length", def.MaxMessageLength, "largest websocket message, bytes")
	f.Int(&l.MaxSubscriptions, "max-subscriptions", def.MaxSubscriptions, "open subscriptions per connection")
	f.Int(&l.MaxFilters, "max-filters", def.MaxFilters, "filters per REQ or COUNT")
	f.Int(&l.MaxLimit, "max-limit", def.MaxLimit, "clamp for each filter's limit (advertised in NIP-11)")
	f.Int(&l.MaxSubIDLength, "max-subid-length", def.MaxSubIDLength, "longest subscription id, bytes")
	f.Int(&l.MaxEventTags, "max-event-tags", def.MaxEventTags, "most tags on one event")
	f.Int(&l.MaxContentLength, "max-content-length", def.MaxContentLength, "largest event content, bytes (kinds other than 445 and 20445)")
	f.Duration(&l.CreatedAtFuture, "created-at-future", def.CreatedAtFuture, "how far in the future created_at may be")
	f.Duration(&l.CreatedAtPast, "created-at-past", def.CreatedAtPast, "how far in the past created_at may be (0 = any age)")
	typed(f, &cfg.MaxConnections, "max-connections", autoMaxConnections, `open websocket connections of the whole process; past it upgrades get HTTP 503: "auto" is the open-file limit (RLIMIT_NOFILE) less a reserve for the store, Redis and plain HTTP, 0 = no cap`,
		`a whole number or "auto"`, parseMaxConnections, formatMaxConnections)
	f.Int(&l.ConnectionsPerIP, "max-connections-per-ip", def.ConnectionsPerIP, "simultaneous connections per client address")
	f.Float64(&l.EventRate, "event-rate", def.EventRate, "sustained events per second per client address, charged on arrival before the signature is checked")
	f.Int(&l.EventBurst, "event-burst", def.EventBurst, "events one client address may send at once")
	f.Float64(&l.ConnEventRate, "conn-event-rate", def.ConnEventRate, "sustained events per second per connection")
	f.Int(&l.ConnEventBurst, "conn-event-burst", def.ConnEventBurst, "events one connection may send at once")
	f.Float64(&l.RequestRate, "request-rate", def.RequestRate, "sustained REQ, COUNT, CLOSE and AUTH messages per second per client address")
	f.Int(&l.RequestBurst, "request-burst", def.RequestBurst, "REQ, COUNT, CLOSE and AUTH messages one client address may send at once")
	f.Float64(&l.ConnRequestRate, "conn-request-rate", def.ConnRequestRate, "sustained REQ, COUNT, CLOSE and AUTH messages per second per connection")
	f.Int(&l.ConnRequestBurst, "conn-request-burst", def.ConnRequestBurst, "REQ, COUNT, CLOSE and AUTH messages one connection may send at once")
	f.Int(&l.IPv6PrefixBits, "ipv6-prefix", def.IPv6PrefixBits, "IPv6 clients in one prefix of this many bits count as one address for every per-address limit")
	f.Int(&l.MaxFilterValues, "max-filter-values", def.MaxFilterValues, "filter values (ids, authors, kinds, tag values; at least one per filter) in the open subscriptions of one connection")
	f.Int(&l.MaxFilterValuesPerIP, "max-filter-values-per-ip", def.MaxFilterValuesPerIP, "filter values in the open subscriptions of all connections from one address")
	f.Int(&l.MaxQueriesPerIP, "max-queries-per-ip", def.MaxQueriesPerIP, "stored queries (REQ until EOSE, COUNT) in flight at once from one address")
	f.Duration(&l.CountTimeout, "count-timeout", def.CountTimeout, "longest time one COUNT may take")
	f.Int(&l.OutboundQueue, "outbound-queue", def.OutboundQueue, "messages queued per connection before a reader that does not keep up is disconnected")
	f.Int(&l.OutboundBytes, "outbound-bytes", def.OutboundBytes, "bytes queued per connection before a reader that does not keep up is disconnected")
	f.Int(&l.OutboundTotalBytes, "outbound-total-bytes", def.OutboundTotalBytes, "bytes queued for all connections together; past it a reader that is behind is disconnected")
	f.Duration(&l.WriteTimeout, "write-timeout", def.WriteTimeout, "deadline for each websocket write")
	f.Duration(&l.PingInterval, "ping-interval", def.PingInterval, "how often each websocket connection is pinged")
	f.Duration(&l.PongTimeout, "pong-timeout", def.PongTimeout, "how long a websocket connection may stay silent (no message, no pong) before it is dropped")

	f.section("Logging")
	f.Var(stringValue{&raw.level}, "log-level", envName("log-level"), "debug, info, warn or error (default info)")
	f.String(&cfg.LogFormat, "log-format", "text", "text or json")
	return f
}

// parseServeConfig reads the serve flags from args and, for flags not given,
// from their environment twins (lookup is os.LookupEnv outside tests).
// extra adds a command's own flags to the serve flags (relay sync).
func parseServeConfig(args []string, lookup func(string) (string, bool), stderr io.Writer, extra ...func(*envFlags)) (config, error) {
	var cfg config
	var raw rawServe
	f := serveFlags(&cfg, &raw)
	for _, add := range extra {
		add(f)
	}
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			return cfg, errHelp
		}
	}
	if err := f.parse(args, lookup); err != nil {
		return cfg, err
	}
	var err error
	if cfg.Admins, err = parseAdmins(raw.admins); err != nil {
		return cfg, err
	}
	if cfg.TrustedProxies, err = parsePrefixes(raw.proxies); err != nil {
		return cfg, err
	}
	if cfg.Kinds, err = policy.ParseKinds(raw.kinds); err != nil {
		return cfg, fmt.Errorf("--kinds: %w", err)
	}
	if cfg.LogLevel, err = parseLevel(raw.level); err != nil {
		return cfg, err
	}
	return cfg, cfg.validate()
}

// printServeUsage writes the serve synopsis and every flag with its default.
func printServeUsage(w io.Writer) {
	var cfg config
	var raw rawServe
	serveFlags(&cfg, &raw).usage(w, serveSynopsis)
}

func (c config) validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("--listen %q: want host:port: %w", c.Listen, err)
	}
	if c.DatabaseURL != "" {
		u, err := url.Parse(c.DatabaseURL)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			return fmt.Errorf("--database-url %s: want a postgres:// URL", postgres.RedactURL(c.DatabaseURL))
		}
	} else if c.DataDir == "" {
		return errors.New("--data-dir is empty (give a directory, or --database-url)")
	}
	if c.RedisURL != "" {
		u, err := url.Parse(c.RedisURL)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
			return fmt.Errorf("--redis-url %s: want a redis:// or rediss:// URL", postgres.RedactURL(c.RedisURL))
		}
	}
	if strings.ContainsAny(c.RedisPrefix, " \t\r\n") {
		return fmt.Errorf("--redis-prefix %q: no spaces", c.RedisPrefix)
	}
	if c.ServiceURL != "" {
		u, err := url.Parse(c.ServiceURL)
		if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
			return fmt.Errorf("--service-url %q: want a ws:// or wss:// URL", c.ServiceURL)
		}
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			return fmt.Errorf("--metrics-listen %q: want host:port: %w", c.MetricsListen, err)
		}
		if _, port, _ := net.SplitHostPort(c.Listen); c.MetricsListen == c.Listen && port != "0" {
			return fmt.Errorf("--metrics-listen %q: must differ from --listen", c.MetricsListen)
		}
	}
	if c.MaxConnections < autoMaxConnections {
		return fmt.Errorf(`--max-connections must be "auto", 0 (no cap) or positive, got %d`, c.MaxConnections)
	}
	if c.SQLiteSync != "full" && c.SQLiteSync != "normal" {
		return fmt.Errorf("--sqlite-synchronous %q: want full or normal", c.SQLiteSync)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("--log-format %q: want text or json", c.LogFormat)
	}
	if c.ShutdownTimeout <= 0 {
		return fmt.Errorf("--shutdown-timeout must be positive, got %v", c.ShutdownTimeout)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--http-read-timeout", c.HTTPReadTimeout}, {"--http-write-timeout", c.HTTPWriteTimeout}, {"--http-idle-timeout", c.HTTPIdleTimeout}} {
		if d.v <= 0 {
			return fmt.Errorf("%s must be positive, got %v", d.name, d.v)
		}
	}
	if c.KeyPackageSlotCap < 0 {
		return fmt.Errorf("--keypackage-slot-cap must be 0 (no cap) or positive, got %d", c.KeyPackageSlotCap)
	}
	if c.KeyPackageEvictAge < 0 {
		return fmt.Errorf("--keypackage-evict-age must not be negative, got %v", c.KeyPackageEvictAge)
	}
	if c.KeyPackageScrubWithin <= 0 {
		return fmt.Errorf("--keypackage-scrub-within must be positive, got %v", c.KeyPackageScrubWithin)
	}
	if c.KeyPackageClaimTTL <= 0 {
		return fmt.Errorf("--keypackage-claim-ttl must be positive, got %v", c.KeyPackageClaimTTL)
	}
	if c.GroupRetention < 0 {
		return fmt.Errorf("--group-retention must not be negative, got %v", c.GroupRetention)
	}
	if c.GroupClaimRate <= 0 || c.GroupClaimBurst <= 0 {
		return fmt.Errorf("--group-claim-rate and --group-claim-burst must be positive, got %v and %d", c.GroupClaimRate, c.GroupClaimBurst)
	}
	if c.RedisBusRetention <= 0 {
		return fmt.Errorf("--redis-bus-retention must be positive, got %v", c.RedisBusRetention)
	}
	if c.KeyPackageHandoutRate < 0 {
		return fmt.Errorf("--keypackage-handout-rate must be 0 (no limit) or positive, got %v", c.KeyPackageHandoutRate)
	}
	if err := c.Limits.Validate(); err != nil {
		return err
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func parseAdmins(s string) ([]string, error) {
	var out []string
	for _, pk := range splitList(s) {
		pk = strings.ToLower(pk)
		if !nostr.IsValidPublicKey(pk) {
			return nil, fmt.Errorf("--admin %q: want a 64-character hex pubkey", pk)
		}
		out = append(out, pk)
	}
	return out, nil
}

func parsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, p := range splitList(s) {
		if strings.Contains(p, "/") {
			pfx, err := netip.ParsePrefix(p)
			if err != nil {
				return nil, fmt.Errorf("--trusted-proxies %q: %w", p, err)
			}
			out = append(out, pfx.Masked())
			continue
		}
		a, err := netip.ParseAddr(p)
		if err != nil {
			return nil, fmt.Errorf("--trusted-proxies %q: want an IP or CIDR", p)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if s == "" {
		return slog.LevelInfo, nil
	}
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// stringValue is a flag.Value for a plain string checked after parsing.
type stringValue struct{ p *string }

func (s stringValue) String() string {
	if s.p == nil {
		return ""
	}
	return *s.p
}
func (s stringValue) Set(v string) error { *s.p = v; return nil }
