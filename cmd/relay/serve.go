package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/burrow-relay/burrow/keypackages"
	"github.com/burrow-relay/burrow/ordering"
	"github.com/burrow-relay/burrow/policy"
	"github.com/burrow-relay/burrow/server"
	"github.com/burrow-relay/burrow/storage"
	"github.com/burrow-relay/burrow/storage/postgres"
	"github.com/burrow-relay/burrow/storage/sqlite"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// serveCommand runs the relay until ctx is cancelled (SIGINT or SIGTERM),
// then shuts down gracefully.
func serveCommand(ctx context.Context, args []string, lookup func(string) (string, bool), stderr io.Writer) error {
	cfg, err := parseServeConfig(args, lookup, stderr)
	if errors.Is(err, errHelp) {
		return err
	}
	if err != nil {
		return usageError{err}
	}
	logger := newLogger(stderr, cfg)
	r, err := startRelay(ctx, cfg, logger)
	if err != nil {
		return err
	}
	<-ctx.Done()
	logger.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	return r.Close(sctx)
}

func newLogger(w io.Writer, cfg config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// runningRelay is a started relay: its listener, HTTP server, engine and
// store, closed in that order.
type runningRelay struct {
	Addr string // the address actually bound (useful with port 0)
	// MetricsAddr is the --metrics-listen address bound ("" without it),
	// served by private.
	MetricsAddr string
	http        *http.Server
	private     *http.Server
	srv         *server.Server
	store       storage.Store
	seq         *sequencing
	// closeStore closes the store and gives back the data directory's lock.
	closeStore func() error
	served     chan error
	log        *slog.Logger
}

// startRelay opens the store, builds the server (openRelay) and starts
// serving; it returns once the listener is bound.
func startRelay(ctx context.Context, cfg config, logger *slog.Logger) (*runningRelay, error) {
	r, backend, err := openRelay(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		r.release(ctx)
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	var mln net.Listener
	if cfg.MetricsListen != "" {
		if mln, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			ln.Close()
			r.release(ctx)
			return nil, fmt.Errorf("listen on %s (--metrics-listen): %w", cfg.MetricsListen, err)
		}
	}
	r.Addr = ln.Addr().String()
	r.http = newHTTPServer(cfg, r.srv)
	go func() { r.served <- r.http.Serve(ln) }()
	if mln != nil {
		r.MetricsAddr = mln.Addr().String()
		r.private = newHTTPServer(cfg, r.srv.ManagementHandler())
		go func() { r.served <- r.private.Serve(mln) }()
		logger.Info("metrics and management API listening", "addr", "http://"+r.MetricsAddr)
	}
	logger.Info("relay listening", "addr", "ws://"+r.Addr, "storage", backend, "kinds", cfg.Kinds.String(), "version", version, "verifier", signatureVerifier)
	return r, nil
}

// openRelay opens the store and builds the server exactly as serve runs
// it (hooks, limiters, sequencing, the Redis bus), without listening:
// startRelay serves it, relay sync stores through it (server.Ingest).
// It returns the relay and a description of its store; release (or Close)
// gives everything back.
func openRelay(ctx context.Context, cfg config, logger *slog.Logger) (*runningRelay, string, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var hooks storeHooks
	var err error
	if hooks.checkpoint, err = server.CheckpointMetrics(reg); err != nil {
		return nil, "", err
	}
	if hooks.commit, err = server.CommitMetrics(reg); err != nil {
		return nil, "", err
	}
	opened, err := openStore(ctx, cfg, logger, hooks)
	if err != nil {
		return nil, "", err
	}
	store := opened.Store
	// The data directory's lock goes once the store is closed.
	closeStore := func() error {
		err := store.Close()
		opened.release()
		return err
	}
	if opened.scrub != nil {
		if err := reg.Register(newScrubCollector(opened.scrub)); err != nil {
			closeStore()
			return nil, "", err
		}
	}
	seq := &sequencing{}
	if cfg.RedisURL != "" {
		useRedisLogger(logger)
		if seq.client, err = openRedis(ctx, cfg.RedisURL); err != nil {
			closeStore()
			return nil, "", err
		}
		if seq.bus, err = openBus(ctx, cfg, opened.secrets, seq.client, logger, reg); err != nil {
			seq.close()
			closeStore()
			return nil, "", err
		}
	}
	lim, err := limiters(cfg, seq.client, logger)
	if err != nil {
		seq.close()
		closeStore()
		return nil, "", err
	}
	kpPolicy := keypackages.Policy{
		SlotCap:    cfg.KeyPackageSlotCap,
		EvictAfter: cfg.KeyPackageEvictAge,
	}
	// Left nil when off: a typed nil would turn the hand-out on.
	var reqHandler server.ReqHandler
	var claimSweeper server.ClaimSweeper
	if cfg.KeyPackageHandout {
		kpPolicy.Handout = newHandout(cfg, store.HandoutClaims())
		reqHandler, claimSweeper = kpPolicy.Handout, kpPolicy.Handout
	}
	slots := ordering.Slots{MaxGroupContent: cfg.Limits.MaxGroupContentLength, Retention: cfg.GroupRetention,
		Limits: &cfg.Limits, Claims: lim.claims}
	var soft []server.Dependency
	if seq.client != nil {
		soft = append(soft, redisDependency(seq.client))
	}
	var fanoutErr error
	srv, err := server.New(server.Config{
		Name:           cfg.Name,
		Description:    cfg.Description,
		Version:        version,
		ServiceURL:     cfg.ServiceURL,
		Admins:         cfg.Admins,
		TrustedProxies: cfg.TrustedProxies,
		Kinds:          cfg.Kinds,
		Limits:         cfg.Limits,
		Hooks: []server.Hook{
			{Store: kpPolicy, NIP11: kpPolicy, Routes: kpPolicy},
			{Envelope: slots, Extensions: slots},
		},
		ReqHandler:        reqHandler,
		ClaimSweeper:      claimSweeper,
		EventLimiter:      lim.events,
		RequestLimiter:    lim.requests,
		GroupLimiter:      lim.group,
		GroupRetention:    cfg.GroupRetention,
		BroadcastVia:      seq.broadcastVia(store, logger, reg, &fanoutErr),
		PublishDeletions:  seq.publishDeletions(),
		Logger:            logger,
		Registry:          reg,
		PrivateManagement: cfg.MetricsListen != "",
		MaxConnections:    maxConnections(cfg, logger),
		SoftDependencies:  soft,
		Negentropy:        cfg.Negentropy,
	}, store)
	if err == nil && fanoutErr != nil {
		srv.Shutdown(ctx)
		err = fanoutErr
	}
	if err != nil {
		seq.close()
		closeStore()
		return nil, "", fmt.Errorf("server: %w", err)
	}
	seq.start(srv, logger)
	return &runningRelay{srv: srv, store: store, seq: seq, closeStore: closeStore, served: make(chan error, 2), log: logger}, opened.backend, nil
}

// newHTTPServer serves h with the plain HTTP timeouts of the flags.
func newHTTPServer(cfg config, h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: min(10*time.Second, cfg.HTTPReadTimeout),
		ReadTimeout:       cfg.HTTPReadTimeout,
		WriteTimeout:      cfg.HTTPWriteTimeout,
		IdleTimeout:       cfg.HTTPIdleTimeout,
	}
}

// newHandout builds the KeyPackage hand-out from the flags. Its claims live
// in the store, so instances sharing a database never hand one KeyPackage
// to two requesters, and a restart forgets no claim.
func newHandout(cfg config, claims storage.HandoutClaims) *keypackages.Handout {
	hc := keypackages.HandoutConfig{ClaimTTL: cfg.KeyPackageClaimTTL, Claims: claims}
	if cfg.KeyPackageHandoutRate > 0 {
		burst := max(1, int(cfg.KeyPackageHandoutRate))
		hc.Limiter = policy.NewTokenBucket(cfg.KeyPackageHandoutRate/60, burst, nil)
		hc.Rate, hc.Burst = cfg.KeyPackageHandoutRate, burst
	}
	return keypackages.NewHandout(hc)
}

// Close stops accepting connections, lets in-flight writes finish and be
// answered (bounded by ctx), then closes the store.
func (r *runningRelay) Close(ctx context.Context) error {
	// Stop the listener first; websocket connections are hijacked, so
	// http.Server.Shutdown does not wait for them: the engine does.
	var herr error
	servers := 0
	for _, h := range []*http.Server{r.http, r.private} {
		if h != nil {
			herr = errors.Join(herr, h.Shutdown(ctx))
			servers++
		}
	}
	rerr := r.release(ctx)
	for range servers {
		if err := <-r.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Error("http server", "err", err)
		}
	}
	r.log.Info("relay stopped")
	return errors.Join(herr, rerr)
}

// release shuts the engine down (bounded by ctx), then stops sequencing
// and closes the store: all of Close but the listeners.
func (r *runningRelay) release(ctx context.Context) error {
	serr := r.srv.Shutdown(ctx)
	qerr := r.seq.close()
	cerr := r.closeStore()
	return errors.Join(serr, qerr, cerr)
}

// openedStore is the store the relay flags name, with what its backend
// offers beside storage.Store, each set by the backend that has it.
type openedStore struct {
	storage.Store
	backend string
	release func() // gives the data directory's lock back
	secrets storage.Secrets
	scrub   scrubBacklogger // nil: deletions leave nothing to scrub later
}

// storeHooks are the metrics callbacks a store reports to: each group
// commit (both backends) and each scrub checkpoint (SQLite).
type storeHooks struct {
	commit     func(writes int, took time.Duration)
	checkpoint func(attempts int, err error)
}

// openStore opens PostgreSQL when a database URL is set, else embedded
// SQLite under the data directory, reporting to hooks.
func openStore(ctx context.Context, cfg config, logger *slog.Logger, hooks storeHooks) (openedStore, error) {
	if cfg.DatabaseURL != "" {
		s, err := postgres.Open(ctx, postgres.Config{URL: cfg.DatabaseURL, Logger: logger, DisableSequencing: cfg.disableSequencing,
			KeyPackageRewriteWithin: cfg.KeyPackageScrubWithin, OnCommit: hooks.commit})
		if err != nil {
			return openedStore{}, err
		}
		return openedStore{Store: s, backend: "postgres", release: func() {}, secrets: s, scrub: s}, nil
	}
	release, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return openedStore{}, err
	}
	path := filepath.Join(cfg.DataDir, "relay.db")
	s, err := sqlite.Open(ctx, sqlite.Config{Path: path, Logger: logger, Synchronous: cfg.SQLiteSync, OnCheckpoint: hooks.checkpoint, OnCommit: hooks.commit,
		DisableSequencing: cfg.disableSequencing})
	if err != nil {
		release()
		return openedStore{}, fmt.Errorf("open embedded database %s: %w", path, err)
	}
	return openedStore{Store: s, backend: "sqlite " + path + " synchronous=" + cfg.SQLiteSync, release: release, secrets: s}, nil
}
