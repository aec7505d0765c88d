package postgres_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
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
			// Twins coexist; the victim goes when its twin is deleted.
			ref := newRef(t)
			victim(443, base, nil, kp(ref))
			twin := a.Event(t, 30443, base+1, nostr.Tags{{"d", "slot"}}, "twin")
			mustKP(t, twin, kp(ref))
			dels, err := s.Delete(ctx, []string{twin.ID}, storage.ReasonAdmin)
			return dels, storage.ReasonTwin + storage.Reason(errString(err))
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
				if _, err := conn.Exec(ctx, "ANALYZE keypackages, keypackage_content"); err != nil {
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

	// The partitions that saw deletions are rewritten; wait until no debt
	// is left (a liveness bound: KeyPackageRewriteWithin plus slack).
	start := time.Now()
	waitScrubbed(t, conn, 10*time.Second)
	t.Logf("KeyPackage content scrubbed %v after the last deletion", time.Since(start).Round(time.Millisecond))
	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		t.Fatal(err)
	}

	// The KeyPackage relations' own files, by pg_relation_filepath: heap,
	// TOAST, TOAST index and indexes of keypackages and of every content
	// partition.
	files := keyPackageFiles(t, conn, pg.DataDir)
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
			t.Errorf("kept KeyPackage %d not found in the KeyPackage files: the scan is blind", i)
		}
	}

	// And no other file of the database holds them (statistics, events).
	var dbOID uint32
	if err := conn.QueryRow(ctx, "SELECT oid FROM pg_database WHERE datname = current_database()").Scan(&dbOID); err != nil {
		t.Fatal(err)
	}
	dbDir := filepath.Join(pg.DataDir, "base", strconv.FormatUint(uint64(dbOID), 10))
	scanDatabaseFiles(t, dbDir, func(p string, b []byte) {
		for i, sec := range gone {
			for _, n := range sec.needles() {
				if bytes.Contains(b, n) {
					t.Errorf("%s still holds bytes of the KeyPackage deleted by %q", p, cases[i].name)
				}
			}
		}
	})
}

// scanDatabaseFiles hands every file under dir to scan. The server keeps
// working while we walk: a file it removes between the listing and the read
// (pg_internal.init, a relation's old file after a rewrite) holds nothing any
// more, so it is skipped, not reported.
func scanDatabaseFiles(t *testing.T, dir string, scan func(path string, b []byte)) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		scan(p, b)
		return nil
	})
	if err != nil {
		unavailable(t, "cannot scan %s: %v", dir, err)
	}
}

// TestDeletedKeyPackageBytesLeaveTheFilesAtScale stores many KeyPackages
// (BURROW_SCRUB_SCALE of them, default 20,000: 250,000 is issue 9's figure,
// see BenchmarkKeyPackageScrubAtScale for the timing), 10 per author, with
// about 2 kB of content each, deletes 64 through the store (kind 5 by their
// authors), waits for the scrub, and scans the KeyPackage files and every
// file of the database: no deleted KeyPackage's content is left, every kept
// one is found (so the scan sees the data), and exactly the partitions that
// saw a deletion were rewritten (the work follows the deletions).
func TestDeletedKeyPackageBytesLeaveTheFilesAtScale(t *testing.T) {
	n := 20_000
	if v := os.Getenv("BURROW_SCRUB_SCALE"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1000 {
			t.Fatalf("BURROW_SCRUB_SCALE=%q: want a number of KeyPackages, at least 1000", v)
		}
	}
	pg := testsvc.Postgres(t)
	if pg.DataDir == "" {
		unavailable(t, "the PostgreSQL server's data directory is unknown (not a throwaway cluster, and SHOW data_directory is not allowed)")
	}
	ctx := context.Background()
	within := 2 * time.Second
	s, err := postgres.Open(ctx, postgres.Config{URL: pg.URL, Logger: testLogger(t), KeyPackageRewriteWithin: within})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	conn, err := pgx.Connect(ctx, pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	authors := make([]storetest.Author, (n+9)/10)
	pubkeys := make([][]byte, len(authors))
	for i := range authors {
		authors[i] = storetest.NewAuthor(t)
		pubkeys[i], _ = hex.DecodeString(authors[i].PubKey)
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		t.Fatal(err)
	}
	// KeyPackage i (author i/10): content "BURROW-KP-<i>-" and 2 kB of
	// base64, id sha256(salt || i).
	for lo := 0; lo < n; lo += 25_000 {
		if _, err := conn.Exec(ctx, `
			WITH r (id, pubkey, created_at, kind, tags, content, sig, slot_d, expires_at, kp_ref) AS (
			SELECT sha256($3 || int4send(i)), ($1::bytea[])[i / 10 + 1], $2 - i % 10, 30443, '\x00'::bytea,
			       convert_to('BURROW-KP-' || i || '-' || (SELECT string_agg(encode(sha512($3 || int4send(i) || int4send(j)), 'base64'), '')
			                                                FROM generate_series(1, 22) AS j), 'UTF8'),
			       sha512($3 || int4send(i)), int4send(i % 10), NULL::bigint, sha256($3 || int4send(-i))
			  FROM generate_series($4::int, $5::int) AS i),
			     c AS (INSERT INTO keypackage_content (part, id, content) SELECT burrow_kp_part(r.pubkey), r.id, r.content FROM r)
			INSERT INTO keypackages (id, pubkey, created_at, kind, tags, content, sig, slot_d, expires_at, kp_ref, part)
			SELECT id, pubkey, created_at, kind, tags, '\x'::bytea, sig, slot_d, expires_at, kp_ref, burrow_kp_part(pubkey) FROM r`,
			pubkeys, time.Now().Unix()-3600, salt, lo, min(lo+25_000, n)-1); err != nil {
			t.Fatal(err)
		}
	}
	nodes := func() map[string]uint32 {
		rows, _ := conn.Query(ctx, `SELECT relid::regclass::text, pg_relation_filenode(relid) FROM pg_partition_tree('keypackage_content') WHERE isleaf`)
		m := map[string]uint32{}
		var rel string
		var node uint32
		if _, err := pgx.ForEachRow(rows, []any{&rel, &node}, func() error { m[rel] = node; return nil }); err != nil {
			t.Fatal(err)
		}
		return m
	}
	before := nodes()

	victims := map[int]bool{}
	for len(victims) < 64 {
		victims[mrand.IntN(n)] = true
	}
	owing := map[string]bool{}
	for i := range victims {
		idb := sha256.Sum256(append(slices.Clone(salt), byte(i>>24), byte(i>>16), byte(i>>8), byte(i)))
		id := hex.EncodeToString(idb[:])
		a := authors[i/10]
		res, err := s.Save(ctx, a.Event(t, 5, nostr.Now(), nostr.Tags{{"e", id}}, ""))
		if err != nil || len(res.Deleted) != 1 || res.Deleted[0].ID != id {
			t.Fatalf("deleting KeyPackage %d: %+v, %v", i, res.Deleted, err)
		}
		var part int16
		if err := conn.QueryRow(ctx, `SELECT burrow_kp_part(decode($1, 'hex'))`, a.PubKey).Scan(&part); err != nil {
			t.Fatal(err)
		}
		owing["keypackage_content_"+strconv.Itoa(int(part))] = true
	}
	start := time.Now()
	waitScrubbed(t, conn, within+30*time.Second)
	t.Logf("%d KeyPackages: %d deletions in %d partitions scrubbed %v after the last one",
		n, len(victims), len(owing), time.Since(start).Round(time.Millisecond))
	after := nodes()
	for rel, node := range before {
		if rewritten := after[rel] != node; rewritten != owing[rel] {
			t.Errorf("partition %s rewritten = %v, want %v (it saw a deletion: %v)", rel, rewritten, owing[rel], owing[rel])
		}
	}
	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		t.Fatal(err)
	}

	marker := []byte("BURROW-KP-")
	found := make(map[int]bool, n)
	scan := func(path string, b []byte) {
		for rest := b; ; {
			k := bytes.Index(rest, marker)
			if k < 0 {
				return
			}
			rest = rest[k+len(marker):]
			end := bytes.IndexByte(rest, '-')
			if end < 0 || end > 10 {
				continue
			}
			i, err := strconv.Atoi(string(rest[:end]))
			if err != nil {
				continue
			}
			found[i] = true
			if victims[i] {
				t.Errorf("%s still holds the content of deleted KeyPackage %d", path, i)
			}
		}
	}
	for _, f := range keyPackageFiles(t, conn, pg.DataDir) {
		b, err := os.ReadFile(f.path)
		if err != nil {
			unavailable(t, "cannot read %s: %v", f.path, err)
		}
		scan(f.rel, b)
	}
	if len(found) != n-len(victims) {
		t.Errorf("the KeyPackage files hold %d KeyPackages' content, want the %d kept: the scan is blind", len(found), n-len(victims))
	}
	var dbOID uint32
	if err := conn.QueryRow(ctx, "SELECT oid FROM pg_database WHERE datname = current_database()").Scan(&dbOID); err != nil {
		t.Fatal(err)
	}
	scanDatabaseFiles(t, filepath.Join(pg.DataDir, "base", strconv.FormatUint(uint64(dbOID), 10)), scan)
}

// waitScrubbed waits until no KeyPackage content partition owes a rewrite.
func waitScrubbed(t *testing.T, conn *pgx.Conn, bound time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		var n int
		if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM keypackage_scrub").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Since(start) > bound {
			t.Fatalf("%d KeyPackage deletions still not scrubbed after %v", n, bound)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type relFile struct{ rel, path string }

// keyPackageFiles lists the files of keypackages and of every content
// partition: heap (each 1 GB segment), TOAST, TOAST index and indexes.
func keyPackageFiles(t *testing.T, conn *pgx.Conn, dataDir string) []relFile {
	t.Helper()
	rows, err := conn.Query(context.Background(), `
		WITH kp AS (
			SELECT oid, reltoastrelid FROM pg_class WHERE oid = 'keypackages'::regclass
			UNION ALL
			SELECT c.oid, c.reltoastrelid FROM pg_partition_tree('keypackage_content') p JOIN pg_class c ON c.oid = p.relid
			 WHERE p.isleaf),
		rels AS (
			SELECT oid FROM kp
			UNION ALL SELECT reltoastrelid FROM kp WHERE reltoastrelid <> 0
			UNION ALL SELECT indexrelid FROM pg_index WHERE indrelid IN (SELECT oid FROM kp UNION ALL SELECT reltoastrelid FROM kp))
		SELECT c.relname, pg_relation_filepath(c.oid) FROM rels JOIN pg_class c ON c.oid = rels.oid`)
	if err != nil {
		t.Fatal(err)
	}
	var files []relFile
	for rows.Next() {
		var rel, path string
		if err := rows.Scan(&rel, &path); err != nil {
			t.Fatal(err)
		}
		for seg := 0; ; seg++ {
			p := filepath.Join(dataDir, path)
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
	// keypackages: heap, 5 indexes; 256 partitions: heap, TOAST, TOAST
	// index, primary key.
	if len(files) < 6+256*4 {
		t.Fatalf("found %d files for the KeyPackage relations; want the heaps, TOAST and indexes", len(files))
	}
	return files
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
