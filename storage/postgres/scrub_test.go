package postgres_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/burrow-relay/burrow/storage"
	"github.com/burrow-relay/burrow/storage/postgres"
	"github.com/burrow-relay/burrow/storage/storetest"
)

// secret is recognisable KeyPackage content: raw bytes starting with a
// marker, published as base64 the way clients publish KeyPackages.
type secret struct {
	raw     []byte
	content string // base64 of raw
}

func newSecret(t *testing.T, name string, size int) secret {
	t.Helper()
	pad := make([]byte, size)
	if _, err := rand.Read(pad); err != nil {
		t.Fatal(err)
	}
	raw := append([]byte("BURROW-KP-SECRET-"+name+"-"), pad...)
	return secret{raw: raw, content: base64.StdEncoding.EncodeToString(raw)}
}

// needles are what a scan looks for: the raw marker and the start of the
// base64 content (TOAST splits long values into chunks, so only a prefix
// is sure to be contiguous on disk).
func (s secret) needles() [][]byte {
	return [][]byte{s.raw[:40], []byte(s.content[:64])}
}

func newRef(t *testing.T) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestDeletedKeyPackageBytesLeaveTheFiles deletes KeyPackages through each
// trigger, waits for the KeyPackage table's rewrite, checkpoints, and scans
// the table's heap, TOAST and index files (and every other file of the
// database) for their bytes: none may be found, while the bytes of the
// KeyPackages still stored are (so the scan does see the data).
func TestDeletedKeyPackageBytesLeaveTheFiles(t *testing.T) {
	pg := testsvc.Postgres(t)
	if pg.DataDir == "" {
		unavailable(t, "the PostgreSQL server's data directory is unknown (not a throwaway cluster, and SHOW data_directory is not allowed)")
	}
	ctx := context.Background()
	s, err := postgres.Open(ctx, postgres.Config{
		URL: pg.URL, Logger: testLogger(t),
		KeyPackageRewriteWithin: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	conn, err := pgx.Connect(ctx, pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	now := time.Now()
	base := nostr.Timestamp(now.Add(-time.Hour).Unix())
	kp := func(ref string) storage.KeyPackage {
		return storage.KeyPackage{Ref: ref, NotAfter: now.Add(30 * 24 * time.Hour)}
	}
	mustKP := func(t *testing.T, ev *nostr.Event, k storage.KeyPackage) storage.Result {
		t.Helper()
		res, err := s.SaveKeyPackage(ctx, ev, k)
		if err != nil {
			t.Fatalf("SaveKeyPackage: %v", err)
		}
		return res
	}

	// Each trigger saves a victim with the secret as content, deletes it
	// and returns the deletions it caused.
	cases := []struct {
		name    string
		size    int
		trigger func(t *testing.T, a storetest.Author, victim func(kind int, at nostr.Timestamp, tags nostr.Tags, k storage.KeyPackage) *nostr.Event) ([]storage.Deletion, storage.Reason)
	}{
		{"kind 5 by e", 200, func(t *testing.T, a storetest.Author, victim func(int, nostr.Timestamp, nostr.Tags, storage.KeyPackage) *nostr.Event) ([]storage.Deletion, storage.Reason) {
			v := victim(443, base, nil, kp(newRef(t)))
			res, err := s.Save(ctx, a.Event(t, 5, base+1, nostr.Tags{{"e", v.ID}}, ""))
			return res.Deleted, storage.ReasonDeletionRequest + storage.Reason(errString(err))
		}},
		{"kind 5 by a", 200, func(t *testing.T, a storetest.Author, victim func(int, nostr.Timestamp, nostr.Tags, storage.KeyPackage) *nostr.Event) ([]storage.Deletion, storage.Reason) {
			victim(30443, base, nostr.Tags{{"d", "slot"}}, kp(newRef(t)))
			res, err := s.Save(ctx, a.Event(t, 5, base+1, nostr.Tags{{"a", "30443:" + a.PubKey + ":slot"}}, ""))
			return res.Deleted, storage.ReasonDeletionRequest + storage.Reason(errString(err))
		}},
		{"kind 5, content in TOAST", 6000, func(t *testing.T, a storetest.Author, victim func(int, nostr.Timestamp, nostr.Tags, storage.KeyPackage) *nostr.Event) ([]storage.Deletion, storage.Reason) {
			v := victim(443, base, nil, kp(newRef(t)))
			res, err := s.Save(ctx, a.Event(t, 5, base+1, nostr.Tags{{"e", v.ID}}, ""))
			return res.Deleted, storage.ReasonDeletionRequest + storage.Reason(errString(err))
		}},
		{"replaced", 200, func(t *testing.T, a storetest.Author, victim func(int, nostr.Timestamp, nostr.Tags, storage.KeyPackage) *nostr.Event) ([]storage.Deletion, storage.Reason) {
			victim(30443, base, nostr.Tags{{"d", "slot"}}, kp(newRef(t)))
			return mustKP(t, a.Event(t, 30443, base+1, nostr.Tags{{"d", "slot"}}, "newer"), kp(newRef(t))).Deleted, storage.ReasonReplaced
		}},
		{"twin", 200, func(t *testing.T, a storetest.Author, victim func(int, nostr.Timestamp, nostr.Tags, storage.KeyPackage) *nostr.Event) ([]storage.Deletion, storage.Reason) {
			ref := newRef(t)
			victim(443, base, nil, kp(ref))
			return mustKP(t, a.Event(t, 30443, base+1, nostr.Tags{{"d", "slot"}}, "twin"), kp(ref)).Deleted, storage.ReasonTwin
		}},
		{"evicted", 200, func(t *testing.T, a storetest.Author, victim func(int, nostr.Timestamp, nostr.Tags, storage.KeyPackage) *nostr.Event) ([]storage.Deletion, storage.Reason) {
			capped := func() storage.KeyPackage {
				k := kp(newRef(t))
				k.SlotCap, k.EvictAfter = 1, time.Hour
				return k
			}
			victim(30443, base-7200, nostr.Tags{{"d", "old"}}, capped())
			return mustKP(t, a.Event(t, 30443, base, nostr.Tags{{"d", "new"}}, "new slot"), capped()).Deleted, storage.ReasonEvicted
		}},
		{"expired", 200, func(t *testing.T, a storetest.Author, victim func(int, nostr.Timestamp, nostr.Tags, storage.KeyPackage) *nostr.Event) ([]storage.Deletion, storage.Reason) {
			k := kp(newRef(t))
			k.NotAfter = now.Add(time.Hour)
			victim(443, base, nil, k)
			dels, err := s.DeleteExpired(ctx, now.Add(2*time.Hour))
			return dels, storage.ReasonExpired + storage.Reason(errString(err))
		}},
		{"Delete", 200, func(t *testing.T, a storetest.Author, victim func(int, nostr.Timestamp, nostr.Tags, storage.KeyPackage) *nostr.Event) ([]storage.Deletion, storage.Reason) {
			v := victim(443, base, nil, kp(newRef(t)))
			dels, err := s.Delete(ctx, []string{v.ID}, storage.ReasonAdmin)
			return dels, storage.ReasonAdmin + storage.Reason(errString(err))
		}},
		{"Ban", 200, func(t *testing.T, a storetest.Author, victim func(int, nostr.Timestamp, nostr.Tags, storage.KeyPackage) *nostr.Event) ([]storage.Deletion, storage.Reason) {
			victim(443, base, nil, kp(newRef(t)))
			dels, err := s.Ban(ctx, a.PubKey)
			return dels, storage.ReasonBanned + storage.Reason(errString(err))
		}},
		{"vanish", 200, func(t *testing.T, a storetest.Author, victim func(int, nostr.Timestamp, nostr.Tags, storage.KeyPackage) *nostr.Event) ([]storage.Deletion, storage.Reason) {
			victim(30443, base, nostr.Tags{{"d", "slot"}}, kp(newRef(t)))
			res, err := s.Save(ctx, a.Event(t, 62, base+1, nostr.Tags{{"relay", "ALL_RELAYS"}}, ""))
			return res.Deleted, storage.ReasonVanish + storage.Reason(errString(err))
		}},
	}

	// Kept KeyPackages: their bytes must be found, or the scan proves nothing.
	var kept []secret
	for i, size := range []int{200, 6000} {
		sec := newSecret(t, "kept"+strconv.Itoa(i), size)
		a := storetest.NewAuthor(t)
		mustKP(t, a.Event(t, 443, base, nil, sec.content), kp(newRef(t)))
		kept = append(kept, sec)
	}

	var gone []secret
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sec := newSecret(t, "gone"+strconv.Itoa(i), tc.size)
			a := storetest.NewAuthor(t)
			var v *nostr.Event
			victim := func(kind int, at nostr.Timestamp, tags nostr.Tags, k storage.KeyPackage) *nostr.Event {
				v = a.Event(t, kind, at, tags, sec.content)
				mustKP(t, v, k)
				return v
			}
			if i == 0 {
				// Statistics must not copy KeyPackage bytes elsewhere.
				if _, err := conn.Exec(ctx, "ANALYZE keypackages"); err != nil {
					t.Fatal(err)
				}
			}
			dels, want := tc.trigger(t, a, victim)
			found := false
			for _, d := range dels {
				if d.ID == v.ID && d.Reason == want {
					found = true
				}
			}
			if !found {
				t.Fatalf("deletions %+v do not remove the victim %s with reason %q", dels, v.ID, want)
			}
			gone = append(gone, sec)
		})
	}

	// The rewrite gives the table a new file; wait for it (a liveness bound:
	// KeyPackageRewriteWithin plus slack).
	var before uint32
	if err := conn.QueryRow(ctx, "SELECT pg_relation_filenode('keypackages')").Scan(&before); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		var node uint32
		if err := conn.QueryRow(ctx, "SELECT pg_relation_filenode('keypackages')").Scan(&node); err != nil {
			t.Fatal(err)
		}
		if node != before {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("keypackages not rewritten within %v of the last deletion", time.Since(start))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("keypackages rewritten %v after the last deletion", time.Since(start).Round(time.Millisecond))
	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		t.Fatal(err)
	}

	// The table's own files, by pg_relation_filepath: heap, TOAST, TOAST
	// index, indexes.
	rows, err := conn.Query(ctx, `
		WITH kp AS (SELECT oid, reltoastrelid FROM pg_class WHERE oid = 'keypackages'::regclass),
		rels AS (
			SELECT oid FROM kp
			UNION ALL SELECT reltoastrelid FROM kp WHERE reltoastrelid <> 0
			UNION ALL SELECT indexrelid FROM pg_index WHERE indrelid IN (SELECT oid FROM kp UNION ALL SELECT reltoastrelid FROM kp))
		SELECT c.relname, pg_relation_filepath(c.oid) FROM rels JOIN pg_class c ON c.oid = rels.oid`)
	if err != nil {
		t.Fatal(err)
	}
	type relFile struct{ rel, path string }
	var files []relFile
	for rows.Next() {
		var rel, path string
		if err := rows.Scan(&rel, &path); err != nil {
			t.Fatal(err)
		}
		for seg := 0; ; seg++ {
			p := filepath.Join(pg.DataDir, path)
			if seg > 0 {
				p += "." + strconv.Itoa(seg)
			}
			if _, err := os.Stat(p); err != nil {
				if errors.Is(err, fs.ErrNotExist) && seg > 0 {
					break
				}
				unavailable(t, "cannot read the PostgreSQL data files: %v", err)
			}
			files = append(files, relFile{rel, p})
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("found %d files for keypackages (%v); want the heap, TOAST and indexes", len(files), files)
	}
	var all []byte
	for _, f := range files {
		b, err := os.ReadFile(f.path)
		if err != nil {
			unavailable(t, "cannot read %s: %v", f.path, err)
		}
		all = append(all, b...)
		for i, sec := range gone {
			for _, n := range sec.needles() {
				if bytes.Contains(b, n) {
					t.Errorf("%s (%s) still holds bytes of the KeyPackage deleted by %q", f.rel, f.path, cases[i].name)
				}
			}
		}
	}
	for i, sec := range kept {
		if !bytes.Contains(all, []byte(sec.content[:64])) {
			t.Errorf("kept KeyPackage %d not found in the keypackages files: the scan is blind", i)
		}
	}

	// And no other file of the database holds them (statistics, events).
	var dbOID uint32
	if err := conn.QueryRow(ctx, "SELECT oid FROM pg_database WHERE datname = current_database()").Scan(&dbOID); err != nil {
		t.Fatal(err)
	}
	dbDir := filepath.Join(pg.DataDir, "base", strconv.FormatUint(uint64(dbOID), 10))
	err = filepath.WalkDir(dbDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for i, sec := range gone {
			for _, n := range sec.needles() {
				if bytes.Contains(b, n) {
					t.Errorf("%s still holds bytes of the KeyPackage deleted by %q", p, cases[i].name)
				}
			}
		}
		return nil
	})
	if err != nil {
		unavailable(t, "cannot scan %s: %v", dbDir, err)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return " (error: " + err.Error() + ")"
}

// unavailable stops a test that needs the server's files: a failure when
// services are required, a loud skip otherwise.
func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv(testsvc.EnvRequireServices) == "1" {
		t.Fatalf("SERVICE UNAVAILABLE: "+format+" ("+testsvc.EnvRequireServices+"=1)", args...)
	}
	t.Skipf("SERVICE UNAVAILABLE: "+format+" (set "+testsvc.EnvRequireServices+"=1 to make this a failure)", args...)
}
