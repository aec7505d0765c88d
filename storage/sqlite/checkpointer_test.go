package sqlite

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage/storetest"
)

// TestCheckpointConnectionSyncsAsTheWriter: the checkpointer's connection
// has the writer's synchronous setting (a checkpoint's fsyncs follow the
// connection that runs it, and the WAL is reused once it has run), and the
// writer's automatic checkpoint is only the backstop.
func TestCheckpointConnectionSyncsAsTheWriter(t *testing.T) {
	for mode, want := range map[string]int{"OFF": 0, "NORMAL": 1, "FULL": 2, "EXTRA": 3} {
		s := openT(t, Config{Path: filepath.Join(t.TempDir(), "relay.db"), Synchronous: mode})
		var ckpt, writer, auto int
		if err := s.ckptDB.QueryRow(`PRAGMA synchronous`).Scan(&ckpt); err != nil {
			t.Fatal(err)
		}
		if err := s.writeDB.QueryRow(`PRAGMA synchronous`).Scan(&writer); err != nil {
			t.Fatal(err)
		}
		if ckpt != want || writer != want {
			t.Errorf("synchronous=%s: checkpointer %d, writer %d; want %d", mode, ckpt, writer, want)
		}
		if err := s.writeDB.QueryRow(`PRAGMA wal_autocheckpoint`).Scan(&auto); err != nil || auto != backstopPages {
			t.Errorf("writer's wal_autocheckpoint = %d, %v; want %d", auto, err, backstopPages)
		}
	}
}

// TestLongRemovalsCheckpointOffTheWriter: while a ban removes a big
// author's events, the WAL is copied into the database file by PASSIVE
// checkpoints off the writer, and restarted between chunks often enough
// that the writer's own automatic checkpoint, which would run inside one
// of its commits, never fires: the WAL never reaches backstopPages frames
// after a commit (read from the wal-index header in the -shm file, whose
// mxFrame field SQLite's file format documents at byte 16).
func TestLongRemovalsCheckpointOffTheWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.db")
	s := openT(t, Config{Path: path, Synchronous: "NORMAL"})
	var (
		mu            sync.Mutex
		rounds        int
		copied        int
		maxFrames     uint32
		readShmFailed error
	)
	s.ckptHook = func(_, c int, _ time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		rounds++
		copied += c
	}
	a := storetest.NewAuthor(t)
	bigAuthor(t, s, a, 20_000, 0, nostr.Now()-10)
	// Start from an empty WAL, so what it reaches is the ban's doing.
	if _, err := s.checkpoint(context.Background()); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	s.batchHook = func(_, _ time.Duration) {
		shm, err := os.ReadFile(path + "-shm")
		mu.Lock()
		defer mu.Unlock()
		if err != nil || len(shm) < 20 {
			readShmFailed = err
			return
		}
		maxFrames = max(maxFrames, binary.NativeEndian.Uint32(shm[16:20]))
	}
	before := s.walWritten.Load()
	if _, err := s.Ban(context.Background(), a.PubKey); err != nil {
		t.Fatalf("Ban: %v", err)
	}
	written := s.walWritten.Load() - before
	mu.Lock()
	defer mu.Unlock()
	if readShmFailed != nil {
		t.Fatalf("read the wal-index: %v", readShmFailed)
	}
	t.Logf("the ban wrote %d WAL pages; %d PASSIVE checkpoints copied %d frames; the WAL peaked at %d frames after a commit",
		written, rounds, copied, maxFrames)
	if written < backstopPages*3/2 {
		t.Fatalf("the ban wrote %d WAL pages: too few to show anything", written)
	}
	if rounds < 2 || copied == 0 {
		t.Errorf("%d PASSIVE checkpoints copied %d frames, want them to copy the WAL", rounds, copied)
	}
	if maxFrames >= backstopPages {
		t.Errorf("the WAL reached %d frames after a commit: the writer's automatic checkpoint (at %d) ran inside it", maxFrames, backstopPages)
	}
}
