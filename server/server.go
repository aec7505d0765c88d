// Package server owns Burrow's websocket engine and HTTP wiring.
//
// Websocket upgrades go to the engine here: one reader goroutine per
// connection, which charges every message to its sender's token buckets
// before spending work on it; EVENT ids and signatures checked in parallel
// by a bounded pool shared by all connections, but events committed,
// answered and broadcast in the order each connection sent them; a locked
// subscription registry with an index built at REQ time, matched against
// each event by one dispatcher goroutine off the publishers' path; stored
// queries read a bounded page, release the database, then write; and per
// connection an outbound queue bounded in messages and bytes (with a
// process-wide byte budget) drained by one writer with a write deadline,
// which drops copies of events deleted since they were queued, so a client
// that stops reading is disconnected instead of slowing anyone else. Every other request goes to an embedded khatru.Relay, which
// serves NIP-11 (from its Info), NIP-86 (ManagementAPI, admins only) and the
// HTTP mux carrying /metrics, /healthz and /readyz.
package server

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/burrow-relay/burrow/policy"
	"github.com/burrow-relay/burrow/storage"
	"github.com/fasthttp/websocket"
	"github.com/fiatjaf/khatru"
	"github.com/nbd-wtf/go-nostr"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Server. The zero value of every optional field picks
// the documented default.
type Config struct {
	// Name and Description are the NIP-11 relay name and description; admins
	// may change them at run time through NIP-86 (the change is kept in the
	// store and wins over these from then on).
	Name        string
	Description string
	// Version is the software version advertised in NIP-11.
	Version string
	// ServiceURL is the relay's public websocket URL (ws:// or wss://).
	// NIP-42 AUTH events must name it, NIP-86 requests its http(s) twin, and
	// a NIP-62 request to vanish that names a relay must name it. When
	// empty, AUTH and NIP-86 are matched against each request's Host, and
	// only ALL_RELAYS requests to vanish are honoured: a Host header never
	// decides an erasure.
	ServiceURL string
	// Admins are the hex pubkeys allowed to call the NIP-86 management API.
	Admins []string
	// TrustedProxies are the peers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// Kinds is the allowed-kinds setting (zero value: all kinds).
	Kinds policy.Kinds
	// Limits are enforced and advertised (zero value: policy.DefaultLimits).
	Limits policy.Limits
	// Rules are extra admission rules (khatru's RejectEvent shape), run after
	// the built-in ones.
	Rules []policy.Rule
	// Hooks check and store the events of particular kinds (see Hook); the
	// first that handles an event takes it.
	Hooks []Hook
	// ReqHandler, if set, serves the REQs it handles (see ReqHandler; the
	// opt-in KeyPackage hand-out), and ClaimSweeper, if set, deletes what
	// it handed out after a while.
	ReqHandler   ReqHandler
	ClaimSweeper ClaimSweeper
	// EventLimiter charges events per client address (default: an in-process
	// token bucket from Limits.EventRate and Limits.EventBurst), and
	// RequestLimiter every other message (Limits.RequestRate and
	// Limits.RequestBurst); see policy.Meter.
	EventLimiter   policy.RateLimiter
	RequestLimiter policy.RateLimiter
	// GroupLimiter charges kind 445 events per group (policy.GroupFlood;
	// default: an in-process token bucket from Limits.GroupRate and
	// Limits.GroupBurst).
	GroupLimiter policy.RateLimiter
	// GroupRetention is how long kind 445 events are kept: the sweeper
	// deletes older ones and admission refuses them (0 keeps them until
	// deleted otherwise).
	GroupRetention time.Duration
	// BroadcastVia, if set, wraps local fan-out: it receives the local
	// Broadcaster and returns the one the EVENT pipeline calls (for an
	// ordering layer or a cross-instance bus), with the GroupWatcher that
	// subscriptions to groups are reported to (nil when nothing watches).
	BroadcastVia func(local Broadcaster) (Broadcaster, GroupWatcher)
	// PublishDeletions, if set, tells the other instances which events this
	// one deleted (the Redis bus); they pass them to RemoteDeletions. It
	// must not block.
	PublishDeletions func(ids []string)
	// SweepInterval is how often expired events are deleted (default 1
	// minute; the sweep also runs at start).
	SweepInterval time.Duration
	// AdminRefresh is how often the NIP-86 state kept in the store (blocked
	// addresses, relay name and description) is reloaded, so that changes
	// made through another instance apply here (default 2 s; it is also
	// loaded at start, before New returns).
	AdminRefresh time.Duration
	// Logger receives structured logs (default slog.Default()).
	Logger *slog.Logger
	// Registry receives the relay's metrics and is served on /metrics
	// (default: a new registry; never the global one).
	Registry *prometheus.Registry
	// PrivateManagement moves /metrics and the NIP-86 management API off
	// this handler onto ManagementHandler, which the caller serves on a
	// listener of its own (--metrics-listen): here /metrics is then 404 and
	// a NIP-86 call is refused with 404 and a NIP-86 error.
	PrivateManagement bool
	// MaxConnections caps the open websocket connections of the whole
	// process; an upgrade past it is refused with 503 (0: no cap).
	MaxConnections int
	// Negentropy serves NIP-77 set reconciliation (NEG-OPEN, NEG-MSG,
	// NEG-CLOSE) and advertises 77 in NIP-11; the limits are in Limits
	// (Neg*).
	Negentropy bool
	// SoftDependencies are services the relay works without, checked by
	// /readyz after the store: one that fails makes /readyz answer 200
	// with a "degraded:" body naming it, rather than 503, since the relay
	// still serves its own clients (Redis, for cross-instance delivery).
	SoftDependencies []Dependency
}

const (
	defaultSweepInterval = time.Minute
	defaultAdminRefresh  = 2 * time.Second
	// authWindow bounds the created_at of NIP-42 AUTH events.
	authWindow = 10 * time.Minute
	software   = "https://github.com/burrow-relay/burrow"
)

// Server is the relay's http.Handler.
type Server struct {
	cfg      Config
	limits   policy.Limits
	store    storage.Store
	log      *slog.Logger
	relay    *khatru.Relay
	upgrader websocket.Upgrader
	metrics  *metrics

	// rules admit a client's event; ingestRules are the same without the
	// per-group flood limit (Ingest: an operator's own tools).
	rules       []policy.Rule
	ingestRules []policy.Rule
	registry    *registry
	broadcaster Broadcaster
	watcher     GroupWatcher // nil: no ordering layer watches groups
	tracker     *commitTracker
	verifySem   chan struct{}
	meter       *policy.Meter
	deleted     *deletedSet
	outBytes    *byteBudget
	// Per-address quotas: connections, filter values of open
	// subscriptions, stored queries in flight.
	connCount    *policy.AddrQuota
	filterValues *policy.AddrQuota
	queries      *policy.AddrQuota
	negBytes     *policy.AddrQuota // memory of open NIP-77 reconciliations
	blocklist    *policy.IPBlocklist
	admins       map[string]bool

	info  relayInfo
	admin adminSync
	conns connSet
	// upgrades counts websocket connections held against MaxConnections.
	upgrades atomic.Int64

	stopping   atomic.Bool
	hardCtx    context.Context // cancelled only when Shutdown gives up waiting
	hardCancel context.CancelFunc
	bgCancel   context.CancelFunc
	bgDone     chan struct{}
	claimDone  <-chan struct{} // closed when the ReqHandler's claim sweep stops
}

// connSet tracks live connections so Shutdown can reach them.
type connSet struct {
	mu sync.Mutex
	m  map[*conn]struct{}
	wg sync.WaitGroup
}

// New builds a Server on store and starts its expiry sweeper. The caller
// keeps ownership of store (Shutdown does not close it).
func New(cfg Config, store storage.Store) (*Server, error) {
	if store == nil {
		return nil, errors.New("server: nil store")
	}
	if cfg.Limits == (policy.Limits{}) {
		cfg.Limits = policy.DefaultLimits()
	}
	if err := cfg.Limits.Validate(); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	for i, h := range cfg.Hooks {
		if (h.Store == nil) == (h.Envelope == nil) {
			return nil, fmt.Errorf("server: hook %d: set exactly one of Store and Envelope", i)
		}
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = defaultSweepInterval
	}
	if cfg.AdminRefresh <= 0 {
		cfg.AdminRefresh = defaultAdminRefresh
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	admins := make(map[string]bool, len(cfg.Admins))
	for _, pk := range cfg.Admins {
		if !policy.IsLowerHex(pk, 64) {
			return nil, fmt.Errorf("server: admin pubkey %q is not 64 lowercase hex characters", pk)
		}
		admins[pk] = true
	}
	if cfg.ServiceURL != "" && nostr.NormalizeURL(cfg.ServiceURL) == "" {
		return nil, fmt.Errorf("server: service URL %q does not parse", cfg.ServiceURL)
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if cfg.GroupLimiter == nil {
		cfg.GroupLimiter = policy.NewTokenBucket(cfg.Limits.GroupRate, cfg.Limits.GroupBurst, nil)
	}
	if cfg.GroupRetention < 0 {
		return nil, fmt.Errorf("server: group retention must not be negative, got %v", cfg.GroupRetention)
	}
	if cfg.MaxConnections < 0 {
		return nil, fmt.Errorf("server: max connections must be 0 (no cap) or positive, got %d", cfg.MaxConnections)
	}

	l := cfg.Limits
	s := &Server{
		cfg:          cfg,
		limits:       l,
		store:        store,
		log:          cfg.Logger,
		metrics:      m,
		tracker:      newCommitTracker(),
		verifySem:    make(chan struct{}, runtime.GOMAXPROCS(0)),
		meter:        policy.NewMeter(l, cfg.EventLimiter, cfg.RequestLimiter),
		deleted:      newDeletedSet(deletedRetention, deletedMax),
		outBytes:     &byteBudget{max: int64(l.OutboundTotalBytes)},
		connCount:    policy.NewAddrQuota(l.ConnectionsPerIP),
		filterValues: policy.NewAddrQuota(l.MaxFilterValuesPerIP),
		queries:      policy.NewAddrQuota(l.MaxQueriesPerIP),
		negBytes:     policy.NewAddrQuota(l.NegBytesPerIP),
		blocklist:    policy.NewIPBlocklist(),
		admins:       admins,
		info:         relayInfo{name: cfg.Name, description: cfg.Description},
		admin:        adminSync{done: make(chan struct{})},
		bgDone:       make(chan struct{}),
	}
	s.registry = newRegistry(s)
	s.conns.m = make(map[*conn]struct{})
	s.upgrader = websocket.Upgrader{
		ReadBufferSize:  4096,
		WriteBufferSize: 4096,
		// Nostr clients connect from any origin; there are no cookies to
		// protect.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	// Admission pipeline, cheapest first; the per-group limit runs last so
	// only otherwise acceptable events spend its tokens. (Every message has
	// already paid its sender's buckets on arrival: policy.Meter.)
	s.ingestRules = append([]policy.Rule{
		cfg.Limits.EventShape(time.Now),
		cfg.Kinds.Rule(),
		policy.GroupEvents(cfg.Limits.MaxGroupContentLength, cfg.GroupRetention, time.Now),
		policy.ProtectedEvents,
	}, cfg.Rules...)
	s.rules = append(slices.Clip(s.ingestRules), policy.GroupFlood(cfg.GroupLimiter))

	s.broadcaster = s.registry
	if cfg.BroadcastVia != nil {
		s.broadcaster, s.watcher = cfg.BroadcastVia(s.registry)
	}
	s.relay = s.newRelay()
	// Blocks and settings made through NIP-86, on any instance, apply from
	// the first request on.
	if err := s.loadAdmin(context.Background()); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s.hardCtx, s.hardCancel = context.WithCancel(context.Background())

	bgCtx, cancel := context.WithCancel(context.Background())
	s.bgCancel = cancel
	go s.sweep(bgCtx)
	go s.reloadAdmin(bgCtx)
	s.claimDone = s.startClaimSweep(bgCtx)
	return s, nil
}

// newRelay builds the embedded khatru.Relay as a struct literal rather than
// with khatru.NewRelay, which starts an expiration goroutine that can never
// be stopped and races (expiry is our store's job, run by the sweeper).
// Only the HTTP side is used: NIP-11, NIP-86 and the mux.
func (s *Server) newRelay() *khatru.Relay {
	rl := &khatru.Relay{
		ServiceURL: s.cfg.ServiceURL,
		Info:       s.baseInfo(),
		// khatru logs through the standard library; send it to slog.
		Log: log.New(slogWriter{s.log}, "", 0),
	}
	rl.OverwriteRelayInformation = append(rl.OverwriteRelayInformation, s.overwriteInfo)
	rl.ManagementAPI = s.managementAPI()
	mux := http.NewServeMux()
	if !s.cfg.PrivateManagement {
		mux.Handle("GET /metrics", s.metrics.handler())
	}
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	for _, h := range s.cfg.Hooks {
		if h.Routes != nil {
			for pattern, handler := range h.Routes.Routes(s.store) {
				mux.Handle(pattern, handler)
			}
		}
	}
	rl.SetRouter(mux)
	return rl
}

// ServeHTTP sends websocket upgrades to the engine and everything else to
// khatru.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Anything that asks for a websocket comes here, even a malformed upgrade
	// (khatru's own websocket path would log through and run its engine).
	if websocket.IsWebSocketUpgrade(r) || strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		s.serveWebsocket(w, r)
		return
	}
	switch {
	case r.Header.Get("Accept") == "application/nostr+json":
		s.serveNIP11(w, r)
	case isManagementCall(r):
		if s.cfg.PrivateManagement {
			refuseManagement(w)
			return
		}
		s.serveManagement(w, r)
	default:
		s.relay.ServeHTTP(w, r)
	}
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// serveManagement serves a NIP-86 call (isManagementCall).
func (s *Server) serveManagement(w http.ResponseWriter, r *http.Request) {
	if !policy.FromTrustedProxy(r, s.cfg.TrustedProxies) {
		// Without a service URL khatru checks the NIP-98 "u" tag
		// against these headers: only a trusted proxy may set them.
		r.Header.Del("X-Forwarded-Host")
		r.Header.Del("X-Forwarded-Proto")
	}
	if msg := checkManagementAuth(r); msg != "" {
		writeManagementError(w, msg)
		return
	}
	s.relay.ServeHTTP(w, r)
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if s.stopping.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("shutting down\n"))
		return
	}
	if err := s.store.Ping(ctx); err != nil {
		s.log.Warn("readiness check failed", "err", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("storage unavailable\n"))
		return
	}
	if down := s.failingDependencies(ctx); len(down) > 0 {
		_, _ = w.Write([]byte("degraded: " + strings.Join(down, ", ") + " unreachable\n"))
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// Shutdown stops accepting websocket connections, stops reading from the
// open ones, lets EVENTs already read be committed and answered, flushes
// and closes every connection, and stops the sweeper and the reload of the
// administration state. If ctx ends first, the remaining connections are
// cut and in-flight writes cancelled; the error is then ctx's.
func (s *Server) Shutdown(ctx context.Context) error {
	s.conns.mu.Lock()
	first := s.stopping.CompareAndSwap(false, true)
	for c := range s.conns.m {
		c.stopReading()
	}
	s.conns.mu.Unlock()
	if first {
		s.bgCancel()
	}

	done := make(chan struct{})
	go func() {
		s.conns.wg.Wait()
		<-s.bgDone
		<-s.admin.done
		<-s.claimDone
		close(done)
	}()
	select {
	case <-done:
		s.registry.close()
		return nil
	case <-ctx.Done():
	}
	s.hardCancel()
	s.conns.mu.Lock()
	for c := range s.conns.m {
		c.kill("shutdown deadline")
	}
	s.conns.mu.Unlock()
	<-done
	s.registry.close()
	return ctx.Err()
}

// sweep deletes expired events, and group events past the retention, at
// start and every SweepInterval.
func (s *Server) sweep(ctx context.Context) {
	defer close(s.bgDone)
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for first := true; ; first = false {
		now := time.Now()
		s.sweepOnce(ctx, "expired events", func() ([]storage.Deletion, error) {
			return s.store.DeleteExpired(ctx, now)
		})
		if r := s.cfg.GroupRetention; r > 0 {
			if first {
				s.announceRetention(ctx, now.Add(-r))
			}
			s.sweepOnce(ctx, "group events past retention", func() ([]storage.Deletion, error) {
				return s.store.DeleteGroupEvents(ctx, now.Add(-r))
			})
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// announceRetention says, before the first sweep deletes them, how many
// group events the retention will delete and from when: an operator who
// lowered --group-retention sees what it costs in the log before it is
// done. Counting is bounded like a client's COUNT.
func (s *Server) announceRetention(ctx context.Context, cutoff time.Time) {
	cctx, cancel := context.WithTimeout(ctx, s.limits.CountTimeout)
	defer cancel()
	until := nostr.Timestamp(cutoff.Unix() - 1) // DeleteGroupEvents removes created_at < cutoff
	n, err := s.store.Count(cctx, nostr.Filter{Kinds: []int{policy.KindGroupEvent}, Until: &until})
	switch {
	case err != nil && ctx.Err() == nil:
		s.log.Warn("group retention: deleting kind 445 events created before the cutoff; could not count them first",
			"cutoff", cutoff.UTC().Format(time.RFC3339), "retention", s.cfg.GroupRetention.String(), "err", err)
	case n > 0:
		s.log.Warn("group retention: deleting kind 445 events created before the cutoff",
			"count", n, "cutoff", cutoff.UTC().Format(time.RFC3339), "retention", s.cfg.GroupRetention.String())
	}
}

func (s *Server) sweepOnce(ctx context.Context, what string, del func() ([]storage.Deletion, error)) {
	deleted, err := del()
	switch {
	case err != nil && ctx.Err() == nil:
		s.log.Error("deleting "+what, "err", err)
	case len(deleted) > 0:
		s.removed(deleted)
		s.log.Info("deleted "+what, "count", len(deleted))
	}
}

// slogWriter adapts a *log.Logger's output to slog.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Warn(strings.TrimSpace(string(p)), "component", "khatru")
	return len(p), nil
}
