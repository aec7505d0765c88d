package sqlite

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
	"github.com/burrow-relay/burrow/storage/storetest"
)

// checkpointLog records what Config.OnCheckpoint reports.
type checkpointLog struct {
	mu    sync.Mutex
	calls []checkpointCall
}

type checkpointCall struct {
	attempts int
	err      error
}

func (l *checkpointLog) record(attempts int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, checkpointCall{attempts, err})
}

func (l *checkpointLog) snapshot() []checkpointCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls)
}

// secretContent returns base64 of n random bytes (the event content) and
// the needles that betray it: 32-byte pieces of the raw bytes and 64-byte
// pieces of the base64 text, so a piece that survives on either side of a
// page boundary is still found.
func secretContent(t *testing.T, n int) (content string, needles [][]byte) {
	t.Helper()
	raw := make([]byte, n)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	content = base64.StdEncoding.EncodeToString(raw)
	for _, src := range []struct {
		b     []byte
		piece int
	}{{raw, 32}, {[]byte(content), 64}} {
		for chunk := range slices.Chunk(src.b, src.piece) {
			needles = append(needles, chunk)
		}
	}
	return content, needles
}

// dbFiles are the files SQLite may keep beside the database at path.
func dbFiles(path string) []string {
	return []string{path, path + "-wal", path + "-journal", path + "-shm"}
}

// leftovers lists the files among dbFiles(path) that hold any needle, with
// how many needles each holds.
func leftovers(t *testing.T, path string, needles [][]byte) []string {
	t.Helper()
	var found []string
	for _, f := range dbFiles(path) {
		b, err := os.ReadFile(f)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatalf("read %s: %v", f, err)
		}
		n := 0
		for _, needle := range needles {
			if bytes.Contains(b, needle) {
				n++
			}
		}
		if n > 0 {
			found = append(found, fmt.Sprintf("%s (%d of %d pieces)", filepath.Base(f), n, len(needles)))
		}
	}
	return found
}

// holdReader opens a read transaction on db and reads, so it holds a WAL
// snapshot (and blocks a TRUNCATE checkpoint) until rolled back.
func holdReader(t *testing.T, db *sql.DB) *sql.Tx {
	t.Helper()
	tx, err := db.BeginTx(context.Background(), &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatalf("begin reader: %v", err)
	}
	var n int
	if err := tx.QueryRow(`SELECT COUNT(*) FROM events`).Scan(&n); err != nil {
		t.Fatalf("reader query: %v", err)
	}
	return tx
}

// TestKeyPackageBytesLeaveTheFiles deletes a KeyPackage through each trigger
// and checks that within 1 s (the bound) no piece of its content, raw
// or base64, nor its signature, is left in the database, WAL, journal or
// shared-memory file. The id stays, in the tombstones table, by design.
func TestKeyPackageBytesLeaveTheFiles(t *testing.T) {
	const readerHold = 300 * time.Millisecond
	type deleter func(t *testing.T, s *Store, a storetest.Author, victim *nostr.Event) []storage.Deletion
	save := func(t *testing.T, s *Store, ev *nostr.Event) []storage.Deletion {
		t.Helper()
		res, err := s.Save(context.Background(), ev)
		if err != nil {
			t.Fatalf("Save kind %d: %v", ev.Kind, err)
		}
		return res.Deleted
	}
	for _, tt := range []struct {
		name string
		kind int
		tags nostr.Tags
		// inMainFile checkpoints before the deletion, so the content sits
		// in the database file (secure_delete's part) rather than the WAL.
		inMainFile bool
		// reader holds a read transaction across the deletion, so the
		// first checkpoint attempts find the WAL busy and retry.
		reader   bool
		deleteIt deleter
	}{
		{"newer 30443 in the same slot", 30443, nostr.Tags{{"d", "device"}}, true, true,
			func(t *testing.T, s *Store, a storetest.Author, v *nostr.Event) []storage.Deletion {
				return save(t, s, a.Event(t, 30443, v.CreatedAt+1, nostr.Tags{{"d", "device"}}, "the replacement, kept"))
			}},
		{"kind 5 by e", 443, nil, false, true,
			func(t *testing.T, s *Store, a storetest.Author, v *nostr.Event) []storage.Deletion {
				return save(t, s, a.Event(t, 5, nostr.Now(), nostr.Tags{{"e", v.ID}, {"k", "443"}}, ""))
			}},
		{"kind 5 by a", 30443, nostr.Tags{{"d", "phone"}}, true, false,
			func(t *testing.T, s *Store, a storetest.Author, v *nostr.Event) []storage.Deletion {
				return save(t, s, a.Event(t, 5, nostr.Now(), nostr.Tags{{"a", "30443:" + a.PubKey + ":phone"}, {"k", "30443"}}, ""))
			}},
		{"Delete", 443, nil, false, false,
			func(t *testing.T, s *Store, _ storetest.Author, v *nostr.Event) []storage.Deletion {
				d, err := s.Delete(context.Background(), []string{v.ID}, storage.ReasonAdmin)
				if err != nil {
					t.Fatalf("Delete: %v", err)
				}
				return d
			}},
		{"DeleteExpired", 30443, nostr.Tags{{"d", "laptop"}, {"expiration", fmt.Sprint(time.Now().Unix() + 60)}}, true, true,
			func(t *testing.T, s *Store, _ storetest.Author, _ *nostr.Event) []storage.Deletion {
				d, err := s.DeleteExpired(context.Background(), time.Now().Add(2*time.Minute))
				if err != nil {
					t.Fatalf("DeleteExpired: %v", err)
				}
				return d
			}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "relay.db")
			var reports checkpointLog
			s := openT(t, Config{Path: path, OnCheckpoint: reports.record})
			ctx := context.Background()
			a := storetest.NewAuthor(t)
			content, needles := secretContent(t, 768) // 1024 base64 characters
			victim := a.Event(t, tt.kind, nostr.Now()-60, tt.tags, content)
			needles = append(needles, []byte(victim.Sig))
			keep := a.Event(t, 1, nostr.Now()-60, nil, "an ordinary note that stays")
			save(t, s, victim)
			save(t, s, keep)
			if tt.inMainFile {
				if _, err := s.checkpoint(ctx); err != nil {
					t.Fatalf("checkpoint: %v", err)
				}
				if !fileContains(t, path, content) {
					t.Fatal("test setup: the content never reached the database file")
				}
			}
			if len(leftovers(t, path, needles)) == 0 {
				t.Fatal("test setup: the content is in no file before the deletion")
			}

			var reader *sql.Tx
			if tt.reader {
				reader = holdReader(t, s.readDB)
			}
			deleted := tt.deleteIt(t, s, a, victim)
			committed := time.Now()
			if !slices.ContainsFunc(deleted, func(d storage.Deletion) bool { return d.ID == victim.ID && d.Kind == tt.kind }) {
				t.Fatalf("deletion reported %+v, want %s (kind %d)", deleted, victim.ID, tt.kind)
			}
			if reader != nil {
				time.Sleep(readerHold)
				if err := reader.Rollback(); err != nil {
					t.Fatalf("release reader: %v", err)
				}
			}

			deadline := committed.Add(time.Second)
			var left []string
			for {
				left = leftovers(t, path, needles)
				if len(left) == 0 && len(reports.snapshot()) > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("1 s after the deletion: content still in %v; checkpoints reported %+v", left, reports.snapshot())
				}
				time.Sleep(5 * time.Millisecond)
			}
			clean := time.Since(committed)
			calls := reports.snapshot()
			if calls[0].err != nil {
				t.Fatalf("checkpoint reported %v", calls[0].err)
			}
			if tt.reader && calls[0].attempts < 2 {
				t.Errorf("checkpoint took %d attempts with a reader holding the WAL, want a retry", calls[0].attempts)
			}
			t.Logf("clean %v after the deletion committed; checkpoint attempts %d", clean.Round(time.Millisecond), calls[0].attempts)

			if !fileContains(t, path, keep.Content) {
				t.Error("the note that was not deleted is missing from the database file")
			}
			if info, err := os.Stat(path + "-wal"); err == nil && info.Size() != 0 {
				t.Errorf("WAL is %d bytes after the checkpoint, want 0", info.Size())
			}
			var tombstoned bool
			if err := s.readDB.QueryRow(`SELECT EXISTS (SELECT 1 FROM tombstones WHERE id = ?)`, victim.ID).Scan(&tombstoned); err != nil || !tombstoned {
				t.Errorf("victim tombstoned = %v, %v; want true", tombstoned, err)
			}
		})
	}
}

// TestOnlyKeyPackageDeletionsScheduleACheckpoint checks that deleting other
// kinds, by every trigger, leaves the WAL to SQLite's own checkpoints, and
// that a KeyPackage deletion schedules one by the time its caller hears of
// it.
func TestOnlyKeyPackageDeletionsScheduleACheckpoint(t *testing.T) {
	for _, tt := range []struct {
		name      string
		kind      int
		tags      nostr.Tags
		trigger   string // "delete", "kind5", "replace", "expire"
		wantScrub bool
	}{
		{"note by Delete", 1, nil, "delete", false},
		{"note by kind 5", 1, nil, "kind5", false},
		{"gift wrap by Delete", 1059, nil, "delete", false},
		{"article replaced", 30023, nostr.Tags{{"d", "post"}}, "replace", false},
		{"relay list replaced", 10051, nil, "replace", false},
		{"note expired", 1, nostr.Tags{{"expiration", fmt.Sprint(time.Now().Unix() + 60)}}, "expire", false},
		{"443 by Delete", 443, nil, "delete", true},
		{"443 by kind 5", 443, nil, "kind5", true},
		{"30443 replaced", 30443, nostr.Tags{{"d", "device"}}, "replace", true},
		{"30443 expired", 30443, nostr.Tags{{"d", "device"}, {"expiration", fmt.Sprint(time.Now().Unix() + 60)}}, "expire", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := openT(t, Config{Path: filepath.Join(t.TempDir(), "relay.db")})
			ctx := context.Background()
			a := storetest.NewAuthor(t)
			ev := a.Event(t, tt.kind, nostr.Now()-60, tt.tags, "content")
			if _, err := s.Save(ctx, ev); err != nil {
				t.Fatalf("Save: %v", err)
			}
			// Saving alone never schedules one.
			if n := s.scrubsScheduled.Load(); n != 0 {
				t.Fatalf("%d checkpoints scheduled after a Save that deleted nothing", n)
			}
			var deleted []storage.Deletion
			var err error
			switch tt.trigger {
			case "delete":
				deleted, err = s.Delete(ctx, []string{ev.ID}, storage.ReasonAdmin)
			case "kind5":
				var res storage.Result
				res, err = s.Save(ctx, a.Event(t, 5, nostr.Now(), nostr.Tags{{"e", ev.ID}}, ""))
				deleted = res.Deleted
			case "replace":
				var res storage.Result
				res, err = s.Save(ctx, a.Event(t, tt.kind, ev.CreatedAt+1, tt.tags, "newer"))
				deleted = res.Deleted
			case "expire":
				deleted, err = s.DeleteExpired(ctx, time.Now().Add(2*time.Minute))
			}
			if err != nil || len(deleted) != 1 || deleted[0].ID != ev.ID {
				t.Fatalf("%s deleted %+v, %v; want %s", tt.trigger, deleted, err, ev.ID)
			}
			if got := s.scrubsScheduled.Load() > 0; got != tt.wantScrub {
				t.Errorf("checkpoint scheduled = %v, want %v", got, tt.wantScrub)
			}
		})
	}
}

// TestABurstOfDeletionsSharesACheckpoint deletes many KeyPackages at once
// and checks that they share checkpoints instead of paying one each.
func TestABurstOfDeletionsSharesACheckpoint(t *testing.T) {
	const n = 16
	var reports checkpointLog
	s := openT(t, Config{Path: filepath.Join(t.TempDir(), "relay.db"), OnCheckpoint: reports.record})
	ctx := context.Background()
	a := storetest.NewAuthor(t)
	ids := make([]string, n)
	for i := range ids {
		ev := a.Event(t, 443, nostr.Now()-60, nil, fmt.Sprintf("keypackage %d", i))
		if _, err := s.Save(ctx, ev); err != nil {
			t.Fatalf("Save: %v", err)
		}
		ids[i] = ev.ID
	}
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			if d, err := s.Delete(ctx, []string{id}, storage.ReasonDeletionRequest); err != nil || len(d) != 1 {
				t.Errorf("Delete = %+v, %v", d, err)
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(time.Second)
	for len(reports.snapshot()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint reported 1 s after the deletions")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	calls := reports.snapshot()
	if len(calls) >= n {
		t.Errorf("%d checkpoints for %d deletions, want them shared", len(calls), n)
	}
	for _, c := range calls {
		if c.err != nil {
			t.Errorf("checkpoint reported %v", c.err)
		}
	}
	t.Logf("%d deletions, %d checkpoint requests, %d checkpoints", n, s.scrubsScheduled.Load(), len(calls))
}

// TestAWaitingCheckpointBlocksNeitherSavesNorClose holds a reader (on a
// connection of its own, as another process would) so the scheduled
// checkpoint keeps retrying, and checks that Saves still complete and that
// Close stops the checkpoint without reporting a failure.
func TestAWaitingCheckpointBlocksNeitherSavesNorClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.db")
	var reports checkpointLog
	s, err := Open(context.Background(), Config{Path: path, OnCheckpoint: reports.record})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a := storetest.NewAuthor(t)
	kp := a.Event(t, 443, nostr.Now()-60, nil, "keypackage")
	if _, err := s.Save(ctx, kp); err != nil {
		t.Fatalf("Save: %v", err)
	}
	other, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	reader := holdReader(t, other)
	defer func() { _ = reader.Rollback() }()

	if _, err := s.Delete(ctx, []string{kp.ID}, storage.ReasonDeletionRequest); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	// Past scrubDelay: the checkpoint is now retrying behind the reader.
	time.Sleep(scrubDelay + 100*time.Millisecond)
	// A Save that waited for the checkpoint would wait for the reader,
	// which is only released after it returns; the timeout turns such a
	// deadlock into a failure.
	saveCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for i := range 5 {
		if _, err := s.Save(saveCtx, a.Event(t, 1, nostr.Now()-60, nil, fmt.Sprintf("note %d", i))); err != nil {
			t.Fatalf("Save while the checkpoint waits for a reader: %v", err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if calls := reports.snapshot(); len(calls) != 0 {
		t.Errorf("checkpoints reported %+v; a round cut short by Close is not reported", calls)
	}
	if _, err := s.checkpoint(ctx); err == nil {
		t.Error("checkpoint after Close succeeded")
	}
}
