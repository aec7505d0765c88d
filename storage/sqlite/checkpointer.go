package sqlite

import (
	"context"
	"fmt"
	"time"
)

// Checkpoints off the writer. SQLite's automatic checkpoint runs on the
// connection whose commit made the WAL reach wal_autocheckpoint pages,
// inside that commit: here the writer's, so the batch that crossed the
// line held every other write while up to 16 MiB of WAL was copied into
// the database file and both files were fsynced (30-120 ms, the whole tail
// of the chunks of a ban or a request to vanish; issue 14 item 10).
//
// The store therefore runs its own PASSIVE checkpoints, on a connection of
// their own (ckptDB), whenever the writer has written checkpointPages pages
// to the WAL since the last one. A PASSIVE checkpoint takes no lock the
// writer needs: the writer goes on committing while it copies. The
// writer's automatic checkpoint stays, at backstopPages, for when the
// checkpointer falls behind; since the checkpointer has copied most of
// the WAL by then, that one copies only the rest.
//
// The WAL is reused from its start (and stops growing) only when a write
// transaction begins with every frame copied and no reader using the WAL,
// which a writer that never pauses never sees. Long removals (inChunks,
// deleteInChunks) therefore catch up between their chunks, off the writer,
// every catchUpPages pages (catchUpWAL), so the next chunk finds the WAL
// copied and restarts it; a checkpoint is repeated while writes committed
// during it are left to copy (copyWAL). Without that, the WAL of a long
// removal beside a trickle of other writes reached the backstop, whose
// checkpoint then ran inside a chunk's commit.
//
// ckptMu serializes the store's checkpoints: these and the scrub's
// TRUNCATE attempts (checkpointOnce), which would otherwise find each
// other's checkpoint lock taken and retry.
const (
	checkpointPages = 1000
	catchUpPages    = 4000
	backstopPages   = 8000
)

// noteWAL runs on the writer goroutine after each commit: it adds the
// pages that commit wrote to the WAL (rawConn.walPages) and wakes the
// checkpointer once checkpointPages have piled up.
func (s *Store) noteWAL(pages int) {
	s.walWritten.Add(int64(pages))
	if s.walPending.Add(int64(pages)) >= checkpointPages {
		select {
		case s.ckptKick <- struct{}{}:
		default:
		}
	}
}

// checkpointer runs a PASSIVE checkpoint each time noteWAL asks, until ctx
// (cancelled by Close) ends.
func (s *Store) checkpointer(ctx context.Context) {
	defer close(s.ckptDone)
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.ckptKick:
		}
		// One checkpoint per wake-up: repeating it to copy what the writer
		// committed meanwhile would keep one running, and with
		// synchronous=FULL its fsyncs delay the writer's.
		if _, _, err := s.passiveCheckpoint(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("background wal checkpoint failed", "err", err)
		}
	}
}

// passiveCheckpoint copies into the database file every WAL frame no
// reader still needs, on the checkpoint connection, without holding up the
// writer. It returns the WAL's frames and how many of them are now in the
// database file.
func (s *Store) passiveCheckpoint(ctx context.Context) (walFrames, copied int, err error) {
	s.ckptMu.Lock()
	defer s.ckptMu.Unlock()
	s.walPending.Store(0)
	var busy int
	start := time.Now()
	err = s.ckptDB.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &walFrames, &copied)
	if err != nil {
		return 0, 0, fmt.Errorf("sqlite: passive checkpoint: %w", err)
	}
	if s.ckptHook != nil {
		s.ckptHook(walFrames, copied, time.Since(start))
	}
	return walFrames, copied, nil
}

// catchUpWAL is called by long removals between their write ops, holding
// nothing: once the writer has written catchUpPages pages since *mark, it
// checkpoints (waiting for a running background checkpoint first), so the
// removal's next write op finds the WAL copied and starts it over.
func (s *Store) catchUpWAL(ctx context.Context, mark *int64) {
	if s.walWritten.Load()-*mark < catchUpPages || s.isClosed.Load() {
		return
	}
	*mark = s.walWritten.Load()
	// A PASSIVE checkpoint never waits for readers or writers: run it even
	// for a caller that has given up, as the removal's next op would.
	if err := s.copyWAL(context.WithoutCancel(ctx)); err != nil {
		s.log.Warn("wal checkpoint between chunks failed", "err", err)
	}
}

// copyWAL checkpoints until a checkpoint finds the WAL as the previous one
// left it, all copied, or copyTries times. A checkpoint copies the frames
// committed before it began, and the writer commits meanwhile; frames it
// left behind keep the WAL from starting over (and growing), so the next
// one copies them, in less time, leaving a shorter window for the next
// commit.
func (s *Store) copyWAL(ctx context.Context) error {
	last := -1
	for range copyTries {
		walFrames, copied, err := s.passiveCheckpoint(ctx)
		if err != nil {
			return err
		}
		if walFrames == last && copied >= walFrames {
			return nil
		}
		last = walFrames
	}
	return nil
}

// copyTries bounds the checkpoints of one copyWAL: a reader that holds old
// frames, or a writer that never pauses, stops every one of them short.
const copyTries = 3
