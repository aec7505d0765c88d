package sqlite

import (
	"context"
	"errors"
	"time"

	"github.com/burrow-relay/burrow/storage"
)

// Scrubbing: secure_delete zeroes a deleted row's bytes in the pages it
// rewrites, but those pages first go to the WAL, and the WAL still holds the
// frames written when the event was stored. Only a TRUNCATE checkpoint moves
// the zeroed pages into the database file and empties the WAL. A commit that
// removed a KeyPackage (kinds 443 and 30443) therefore schedules one; a
// goroutine runs it after a short pause, so a burst of deletions shares one
// checkpoint, and Saves never wait for it long: each attempt first copies
// what it can off the writer (a PASSIVE checkpoint on the checkpointer's
// connection, see checkpointer.go), then holds the write connection only for
// one non-waiting TRUNCATE try, which copies what was committed meanwhile
// and empties the WAL (see checkpointOnce).

const (
	// scrubDelay is the pause between the first deletion and the checkpoint
	// that covers it and every deletion committed meanwhile. With the retry
	// backoff of checkpoint it keeps the bytes' stay in the files well under
	// the 1 s promised once readers let go.
	scrubDelay = 100 * time.Millisecond
	// scrubTimeout bounds one round of attempts; a round that times out (a
	// reader held the WAL throughout) is reported and tried again.
	scrubTimeout = 30 * time.Second
	// scrubRetryPause separates a failed round from the next one.
	scrubRetryPause = time.Second
)

// scrubsOnDelete reports whether deleting an event of this kind schedules a
// checkpoint. Only KeyPackages are promised to leave the files; checkpointing
// after every deletion would add a WAL copy and fsync to routine traffic.
func scrubsOnDelete(kind int) bool {
	return kind == 443 || kind == 30443
}

// scheduleScrub asks the scrubber for a checkpoint. It never blocks: one
// pending request covers every deletion committed before it runs.
func (s *Store) scheduleScrub() {
	s.scrubsScheduled.Add(1)
	select {
	case s.scrubKick <- struct{}{}:
	default:
	}
}

// scrubber runs the scheduled checkpoints until ctx (cancelled by Close)
// ends. Close then closes the connections; the last one to close checkpoints
// the WAL and removes it, so a round cut short by Close is not reported.
func (s *Store) scrubber(ctx context.Context) {
	defer close(s.scrubDone)
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.scrubKick:
		}
		if !sleepCtx(ctx, scrubDelay) {
			return
		}
		// Deletions that asked before this point are committed, so the
		// checkpoint below covers them; later ones ask again.
		select {
		case <-s.scrubKick:
		default:
		}
		round, cancel := context.WithTimeout(ctx, scrubTimeout)
		attempts, err := s.checkpoint(round)
		cancel()
		if ctx.Err() != nil || errors.Is(err, storage.ErrClosed) {
			return
		}
		if s.onCheckpoint != nil {
			s.onCheckpoint(attempts, err)
		}
		if err != nil {
			s.log.Warn("wal checkpoint after KeyPackage deletion failed; retrying", "attempts", attempts, "err", err)
			if !sleepCtx(ctx, scrubRetryPause) {
				return
			}
			s.scheduleScrub()
			continue
		}
		s.log.Debug("wal checkpointed after KeyPackage deletion", "attempts", attempts)
	}
}

// sleepCtx waits d and reports whether ctx was still live at the end.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
