package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/burrow-relay/burrow/storage/postgres"
	"github.com/burrow-relay/burrow/storage/sqlite"
)

// pgKeyPackageTables are the PostgreSQL tables whose rows hold
// KeyPackages, their content (in 256 partitions), index rows, scrub debts
// and hand-out claims: a backup leaves their rows out. keypackage_refs,
// the refs of every KeyPackage and which died, is kept, as are
// tombstones.
var pgKeyPackageTables = []string{"keypackages", "keypackage_content*", "keypackage_tags", "keypackage_scrub", "keypackage_claims"}

// pgDumpArgs are pg_dump's arguments, the database URL aside, for the
// backup docs/operations.md documents.
func pgDumpArgs(file string) []string {
	args := []string{"--format=custom"}
	for _, t := range pgKeyPackageTables {
		args = append(args, "--exclude-table-data="+t)
	}
	return append(args, "--file="+file)
}

// pgDumpCommand is that command as an operator types it.
func pgDumpCommand() string {
	var b strings.Builder
	b.WriteString("pg_dump")
	for _, a := range pgDumpArgs("burrow.dump") {
		b.WriteString(" " + strings.Replace(a, "=keypackage_content*", "='keypackage_content*'", 1))
	}
	b.WriteString(` "$RELAY_DATABASE_URL"`)
	return b.String()
}

// pgBuryLiveRefs is the SQL to run on a restored PostgreSQL dump before
// the relay starts on it: the KeyPackages live when the dump was taken are
// not in it, and marking their refs dead keeps anyone from re-publishing
// one of them (one may have been used since).
const pgBuryLiveRefs = `UPDATE keypackage_refs SET deleted_at = floor(extract(epoch FROM now()))::bigint WHERE deleted_at IS NULL;`

// backupCommand writes an online, consistent copy of the embedded store
// named by --data-dir to --out, without its KeyPackages (sqlite.Backup),
// while the relay may be running. A PostgreSQL store is refused with the
// pg_dump command to use instead.
func backupCommand(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) error {
	f := newEnvFlags("relay backup")
	var dataDir, databaseURL, out string
	f.Var(stringValue{&out}, "out", "RELAY_BACKUP_OUT", "the backup file to write (required; an existing file is never overwritten)")
	f.String(&dataDir, "data-dir", "./data", "directory of the embedded SQLite database to back up (the relay's --data-dir)")
	f.String(&databaseURL, "database-url", "", "the relay's --database-url: set, relay backup refuses and names the pg_dump command to use")
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			f.usage(stdout, "usage: relay backup --out FILE [--data-dir DIR]\n\n"+
				"Writes a consistent copy of the embedded SQLite store while the relay runs,\n"+
				"without KeyPackages (kinds 443 and 30443): a restored backup never brings\n"+
				"back a KeyPackage deleted after it was taken. See docs/operations.md.")
			return errHelp
		}
	}
	if err := f.parse(args, lookup); err != nil {
		return usageError{err}
	}
	if databaseURL != "" {
		return usageError{fmt.Errorf("relay backup copies the embedded SQLite store only; for PostgreSQL (%s) use pg_dump without the KeyPackage rows:\n  %s\n(docs/operations.md, \"Backup and restore\")",
			postgres.RedactURL(databaseURL), pgDumpCommand())}
	}
	if out == "" {
		return usageError{errors.New("--out is required: the backup file to write")}
	}
	path := filepath.Join(dataDir, "relay.db")
	current, latest, err := sqlite.SchemaVersion(ctx, path)
	switch {
	case err != nil:
		return err
	case current == 0:
		return fmt.Errorf("no store to back up at %s (check --data-dir)", path)
	case current != latest:
		return fmt.Errorf("the store at %s has schema %d and this binary knows %d: back it up with the binary that serves it", path, current, latest)
	}
	res, err := sqlite.Backup(ctx, path, out, dataDir)
	if errors.Is(err, fs.ErrExist) {
		return usageError{fmt.Errorf("--out %s exists already; relay backup never overwrites a file", out)}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backup written: %s (%d bytes, %d events, schema %d); %d KeyPackages left out and tombstoned\n",
		out, res.Bytes, res.Events, res.SchemaVersion, res.KeyPackagesLeftOut)
	return nil
}
