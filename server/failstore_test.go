package server

import (
	"context"
	"iter"
	"sync"
	"sync/atomic"
	"time"

	"github.com/burrow-relay/burrow/storage"
	"github.com/nbd-wtf/go-nostr"
)

// failingStore wraps a real store to inject failures and pauses.
type failingStore struct {
	storage.Store
	pingErr error
	saveErr error
	saveSeq int64

	// If set, the first Save (before storing, or after storing when
	// pauseAfterCommit) closes saveEntered and waits for release.
	saveEntered      chan struct{}
	release          chan struct{}
	pauseAfterCommit bool
	saveOnce         sync.Once

	// If set, the first Query closes queryEntered and waits for
	// queryRelease before running.
	queryEntered chan struct{}
	queryRelease chan struct{}
	queryOnce    sync.Once

	sweeps atomic.Int64
}

func (f *failingStore) pauseOnce(once *sync.Once, entered, release chan struct{}) {
	if entered == nil {
		return
	}
	first := false
	once.Do(func() { first = true; close(entered) })
	if first {
		<-release
	}
}

func (f *failingStore) Save(ctx context.Context, ev *nostr.Event) (storage.Result, error) {
	if f.saveErr != nil {
		return storage.Result{Seq: f.saveSeq}, f.saveErr
	}
	if !f.pauseAfterCommit {
		f.pauseOnce(&f.saveOnce, f.saveEntered, f.release)
	}
	res, err := f.Store.Save(ctx, ev)
	if f.pauseAfterCommit {
		f.pauseOnce(&f.saveOnce, f.saveEntered, f.release)
	}
	return res, err
}

func (f *failingStore) Query(ctx context.Context, flt nostr.Filter) iter.Seq2[*nostr.Event, error] {
	return func(yield func(*nostr.Event, error) bool) {
		f.pauseOnce(&f.queryOnce, f.queryEntered, f.queryRelease)
		for ev, err := range f.Store.Query(ctx, flt) {
			if !yield(ev, err) {
				return
			}
		}
	}
}

func (f *failingStore) DeleteExpired(ctx context.Context, now time.Time) ([]storage.Deletion, error) {
	f.sweeps.Add(1)
	return f.Store.DeleteExpired(ctx, now)
}

func (f *failingStore) Ping(ctx context.Context) error {
	if f.pingErr != nil {
		return f.pingErr
	}
	return f.Store.Ping(ctx)
}
