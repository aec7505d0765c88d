// Command baseline runs stock khatru v0.19.1 on an eventstore v0.17.8 backend, wired and nothing
// more. It exists to be measured (bench/) and conformance-tested against; it is not Burrow.
//
// With --database-url it stores events through eventstore's postgresql backend; without it, in a
// slicestore kept behind a mutex (slicestore alone takes no lock on save, delete or query). Once
// listening it prints one line, "listening on ws://HOST:PORT", to standard output, so a parent
// process can start it on port 0 and learn the address.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/fiatjaf/eventstore"
	"github.com/fiatjaf/eventstore/postgresql"
	"github.com/fiatjaf/eventstore/slicestore"
	"github.com/fiatjaf/khatru"
	"github.com/nbd-wtf/go-nostr"
)

// config is what the command line sets.
type config struct {
	Listen      string
	DatabaseURL string
}

func main() {
	var cfg config
	flag.StringVar(&cfg.Listen, "listen", "127.0.0.1:3334", "address to listen on (port 0 picks a free one)")
	flag.StringVar(&cfg.DatabaseURL, "database-url", "", "postgres:// URL for eventstore's postgresql backend; empty keeps events in memory")
	flag.Parse()

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if err := run(ctx, cfg, logger); err != nil {
		logger.Error("baseline stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config, logger *slog.Logger) error {
	store, backend, err := openStore(cfg)
	if err != nil {
		return err
	}
	defer store.Close()

	relay := khatru.NewRelay()
	relay.Info.Name = "stock khatru baseline"
	relay.Info.Description = "khatru v0.19.1 with eventstore v0.17.8 (" + backend + "), unmodified"
	relay.StoreEvent = append(relay.StoreEvent, store.SaveEvent)
	relay.QueryEvents = append(relay.QueryEvents, store.QueryEvents)
	relay.DeleteEvent = append(relay.DeleteEvent, store.DeleteEvent)
	relay.ReplaceEvent = append(relay.ReplaceEvent, store.ReplaceEvent)
	if counter, ok := store.(eventstore.Counter); ok {
		relay.CountEvents = append(relay.CountEvents, counter.CountEvents)
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	server := &http.Server{Handler: relay, ReadHeaderTimeout: 10 * time.Second}

	// The parent (bench.StartBaseline) reads this exact line to learn the port.
	fmt.Printf("listening on ws://%s\n", ln.Addr())
	logger.Info("baseline listening", "addr", ln.Addr().String(), "store", backend)

	served := make(chan error, 1)
	go func() { served <- server.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Websocket connections are hijacked, so Shutdown does not wait for them; Close ends them.
	if err := server.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// openStore picks the backend and initialises it; the string names it for logs and NIP-11.
func openStore(cfg config) (eventstore.Store, string, error) {
	if cfg.DatabaseURL != "" {
		pg := &postgresql.PostgresBackend{DatabaseURL: cfg.DatabaseURL}
		if err := pg.Init(); err != nil {
			return nil, "", fmt.Errorf("open postgresql store: %w", err)
		}
		return pg, "postgresql", nil
	}
	mem := &lockedSliceStore{inner: &slicestore.SliceStore{}}
	if err := mem.Init(); err != nil {
		return nil, "", fmt.Errorf("open memory store: %w", err)
	}
	return mem, "slicestore", nil
}

// lockedSliceStore serialises every call into a slicestore, which on its own races between
// concurrent saves, deletes and the goroutine that streams query results.
type lockedSliceStore struct {
	mu    sync.Mutex
	inner *slicestore.SliceStore
}

func (s *lockedSliceStore) Init() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inner.Init()
}

func (s *lockedSliceStore) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inner.Close()
}

// QueryEvents drains the inner query while holding the lock, so the slice is never read while
// another call changes it; results then stream from a copy. The inner query runs without the
// caller's cancellation because slicestore's streaming goroutine returns without closing its
// channel when cancelled, and draining it under the lock would then never end.
func (s *lockedSliceStore) QueryEvents(ctx context.Context, filter nostr.Filter) (chan *nostr.Event, error) {
	s.mu.Lock()
	inner, err := s.inner.QueryEvents(context.WithoutCancel(ctx), filter)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	var found []*nostr.Event
	for evt := range inner {
		found = append(found, evt)
	}
	s.mu.Unlock()

	out := make(chan *nostr.Event, len(found))
	for _, evt := range found {
		out <- evt
	}
	close(out)
	return out, nil
}

func (s *lockedSliceStore) CountEvents(ctx context.Context, filter nostr.Filter) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inner.CountEvents(ctx, filter)
}

func (s *lockedSliceStore) SaveEvent(ctx context.Context, evt *nostr.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inner.SaveEvent(ctx, evt)
}

func (s *lockedSliceStore) DeleteEvent(ctx context.Context, evt *nostr.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inner.DeleteEvent(ctx, evt)
}

func (s *lockedSliceStore) ReplaceEvent(ctx context.Context, evt *nostr.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inner.ReplaceEvent(ctx, evt)
}
