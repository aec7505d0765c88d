package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// backupReason is the tombstone reason of the KeyPackages a backup leaves
// out. Only tombstones' existence is ever read, so it is not a
// storage.Reason and never reaches a metric.
const backupReason = "left_out_of_backup"

// BackupResult says what Backup wrote.
type BackupResult struct {
	// Events is how many events the backup holds.
	Events int64
	// KeyPackagesLeftOut is how many KeyPackage events (kinds 443 and
	// 30443) were live in the store and are not in the backup.
	KeyPackagesLeftOut int64
	// SchemaVersion is the backup's schema version.
	SchemaVersion int
	// Bytes is the backup file's size.
	Bytes int64
}

// Backup writes a consistent copy of the database at path to out while the
// store may be open and writing (VACUUM INTO reads one snapshot), without
// the KeyPackages: restoring an older backup must never bring back a
// KeyPackage deleted after it was taken (a used KeyPackage must stay gone
// for MLS forward secrecy). The copy keeps every tombstone and deleted
// KeyPackageRef, and tombstones the ids and refs of the KeyPackages it
// leaves out, so that nobody can re-publish one of them into the restored
// store either (their owners publish new ones).
//
// The copy is made in stageDir first (a directory that may already hold
// KeyPackages, such as the data directory, so that their bytes reach no
// other disk), stripped there, then vacuumed into a temporary file beside
// out, synced, and linked to out: out appears whole or not at all, and an
// existing out is never overwritten.
func Backup(ctx context.Context, path, out, stageDir string) (BackupResult, error) {
	var res BackupResult
	if _, err := os.Stat(path); err != nil {
		return res, fmt.Errorf("sqlite: backup source: %w", err)
	}
	if _, err := os.Lstat(out); err == nil {
		return res, fmt.Errorf("sqlite: backup: %s: %w", out, fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return res, fmt.Errorf("sqlite: backup: %w", err)
	}

	stage, err := emptyTemp(stageDir, ".backup-stage-*.db")
	if err != nil {
		return res, err
	}
	defer removeWithCompanions(stage)
	if err := vacuumInto(ctx, path, stage); err != nil {
		return res, fmt.Errorf("sqlite: backup: copy %s: %w", path, err)
	}
	if res, err = stripKeyPackages(ctx, stage); err != nil {
		return res, fmt.Errorf("sqlite: backup: %w", err)
	}

	final, err := emptyTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-*")
	if err != nil {
		return res, err
	}
	defer removeWithCompanions(final)
	if err := vacuumInto(ctx, stage, final); err != nil {
		return res, fmt.Errorf("sqlite: backup: compact the copy: %w", err)
	}
	if res.Bytes, err = syncFile(final); err != nil {
		return res, fmt.Errorf("sqlite: backup: %w", err)
	}
	if err := os.Link(final, out); err != nil {
		return res, fmt.Errorf("sqlite: backup: %w", err)
	}
	if err := syncDir(filepath.Dir(out)); err != nil {
		return res, fmt.Errorf("sqlite: backup: %w", err)
	}
	return res, nil
}

// emptyTemp creates an empty file (mode 0600) in dir for VACUUM INTO,
// which writes only into a file that is missing or empty.
func emptyTemp(dir, pattern string) (string, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", fmt.Errorf("sqlite: backup: %w", err)
	}
	name := f.Name()
	if err := f.Close(); err != nil {
		_ = os.Remove(name)
		return "", fmt.Errorf("sqlite: backup: %w", err)
	}
	return name, nil
}

// removeWithCompanions removes a scratch database and any journal SQLite
// left beside it.
func removeWithCompanions(path string) {
	for _, suffix := range []string{"", "-journal", "-wal", "-shm"} {
		_ = os.Remove(path + suffix)
	}
}

// vacuumInto copies the database at src into the empty file dst in one
// read transaction (VACUUM INTO writes nothing to src, but query_only
// would refuse it).
func vacuumInto(ctx context.Context, src, dst string) error {
	db, err := sql.Open("sqlite", dsn(src, defaultBusyTimeout, url.Values{}))
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, `VACUUM INTO ?`, dst)
	return err
}

// stripKeyPackages deletes the KeyPackage events of the staged copy at path
// with their tag rows and hand-out claims, tombstones their ids and refs,
// and reports what the copy holds.
func stripKeyPackages(ctx context.Context, path string) (BackupResult, error) {
	var res BackupResult
	// A scratch copy: no journal to leave content in, no fsync.
	db, err := sql.Open("sqlite", dsn(path, defaultBusyTimeout, url.Values{
		"_pragma": {"journal_mode(OFF)", "synchronous(OFF)", "secure_delete(ON)", "temp_store(MEMORY)"},
	}))
	if err != nil {
		return res, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return res, err
	}
	defer func() { _ = tx.Rollback() }()
	now := time.Now().Unix()
	steps := []struct {
		what, sql string
		args      []any
	}{
		{"tombstone KeyPackage ids", `INSERT INTO tombstones (id, reason, deleted_at)
			SELECT id, ?, ? FROM events WHERE kind IN (443, 30443) ON CONFLICT (id) DO NOTHING`, []any{backupReason, now}},
		{"bury KeyPackage refs", `INSERT INTO keypackage_refs_deleted (ref, deleted_at)
			SELECT DISTINCT kp_ref, ? FROM events WHERE kind IN (443, 30443) AND kp_ref IS NOT NULL ON CONFLICT (ref) DO NOTHING`, []any{now}},
		{"drop hand-out claims", `DELETE FROM keypackage_claims`, nil},
		{"drop KeyPackage tag rows", `DELETE FROM tags WHERE event IN (SELECT n FROM events WHERE kind IN (443, 30443))`, nil},
	}
	for _, s := range steps {
		if _, err := tx.ExecContext(ctx, s.sql, s.args...); err != nil {
			return res, fmt.Errorf("%s: %w", s.what, err)
		}
	}
	r, err := tx.ExecContext(ctx, `DELETE FROM events WHERE kind IN (443, 30443)`)
	if err != nil {
		return res, fmt.Errorf("drop KeyPackages: %w", err)
	}
	if res.KeyPackagesLeftOut, err = r.RowsAffected(); err != nil {
		return res, err
	}
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM events`).Scan(&res.Events); err != nil {
		return res, fmt.Errorf("count events: %w", err)
	}
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&res.SchemaVersion); err != nil {
		return res, fmt.Errorf("read schema version: %w", err)
	}
	return res, tx.Commit()
}

// syncFile flushes path to disk and returns its size.
func syncFile(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return 0, err
	}
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// syncDir makes a new directory entry durable (a no-op where directories
// cannot be opened for sync).
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
