package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/jackc/pgx/v5"
	"github.com/nbd-wtf/go-nostr"
)

// backupFixture is what TestBackupAndRestore puts in a store: a plain
// note, a group whose events have seqs and a commit slot, a live
// KeyPackage, and a deleted one (tombstoned).
type backupFixture struct {
	note, deletedKP, liveKP nostr.Event
	liveKPContent           []byte // the live KeyPackage's raw bytes
	h                       string
	group                   []string // ids in seq order
	holder                  nostr.Event
	slotKey                 author // signs the claims of the group's commit slot
}

func fillForBackup(t *testing.T, c *wsClient) backupFixture {
	t.Helper()
	a := newAuthor(t)
	var fx backupFixture
	publish := func(ev nostr.Event) string {
		t.Helper()
		ok, msg, err := c.publish(ev, testTimeout)
		if err != nil || !ok {
			t.Fatalf("publishing kind %d: ok=%v %q %v", ev.Kind, ok, msg, err)
		}
		return msg
	}
	fx.note = a.sign(t, 1, "a note that outlives backups", nil, 0)
	publish(fx.note)

	fx.deletedKP = a.slotEvent(t, slotID(0), 0)
	publish(fx.deletedKP)
	publish(a.sign(t, 5, "", nostr.Tags{{"e", fx.deletedKP.ID}, {"k", "30443"}}, 0))
	fx.liveKP = a.slotEvent(t, slotID(1), 0)
	publish(fx.liveKP)
	raw, err := base64.StdEncoding.DecodeString(fx.liveKP.Content)
	if err != nil {
		t.Fatal(err)
	}
	fx.liveKPContent = raw

	fx.h = newGroupID()
	fx.holder = groupEvent(t, fx.h)
	fx.slotKey = newAuthor(t)
	if msg := publish(claim(t, fx.slotKey, fx.holder, "")); msg != "seq:1" {
		t.Fatalf("claim: %q", msg)
	}
	fx.group = []string{fx.holder.ID}
	for i := 2; i <= 3; i++ {
		ev := groupEvent(t, fx.h)
		if msg := publish(ev); msg != "seq:"+strconv.Itoa(i) {
			t.Fatalf("group event %d: %q", i, msg)
		}
		fx.group = append(fx.group, ev.ID)
	}
	return fx
}

// TestBackupAndRestore: relay backup copies a running relay's embedded
// store; the copy, put in a fresh --data-dir, serves the note and the
// group's log with its seqs, the next group event continues the seq, the
// commit slot still has its holder, and no KeyPackage is served or can be
// re-published (the deleted one as before, the live one because it was
// tombstoned on the way out); the file's bytes hold no KeyPackage content.
// A second backup to the same file is refused and leaves it alone.
func TestBackupAndRestore(t *testing.T) {
	dataDir := t.TempDir()
	r := startConfigured(t, "--data-dir", dataDir)
	fx := fillForBackup(t, mustDial(t, "ws://"+r.Addr))

	out := filepath.Join(t.TempDir(), "burrow.db")
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"backup", "--data-dir", dataDir, "--out", out}, env(nil), &stdout, &stderr); code != 0 {
		t.Fatalf("backup: exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "1 KeyPackages left out") {
		t.Errorf("backup said %q", stdout.String())
	}
	leftovers, _ := filepath.Glob(filepath.Join(dataDir, ".backup-*"))
	tmp, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".*"))
	if len(leftovers)+len(tmp) > 0 {
		t.Errorf("scratch files left behind: %v %v", leftovers, tmp)
	}

	// No byte of the KeyPackages, live or deleted, in the file.
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, needle := range [][]byte{fx.liveKPContent[len(fx.liveKPContent)-48:], []byte(fx.liveKP.Content[:64]),
		[]byte(fx.deletedKP.Content[:64]), []byte(fx.liveKP.Sig)} {
		if bytes.Contains(b, needle) {
			t.Fatalf("the backup holds KeyPackage bytes %q", needle[:16])
		}
	}
	if !bytes.Contains(b, []byte(fx.note.Content)) {
		t.Fatal("the backup lacks the note (is the scan reading the right file?)")
	}

	// Never overwritten.
	before, _ := os.Stat(out)
	stderr.Reset()
	if code := run(context.Background(), []string{"backup", "--data-dir", dataDir, "--out", out}, env(nil), io.Discard, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), "exists already") {
		t.Errorf("second backup to the same file: exit %d %q", code, stderr.String())
	}
	if after, _ := os.Stat(out); !after.ModTime().Equal(before.ModTime()) || after.Size() != before.Size() {
		t.Error("the existing backup was touched")
	}

	// Restore: the file as relay.db of a fresh --data-dir.
	restored := t.TempDir()
	if err := os.WriteFile(filepath.Join(restored, "relay.db"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	var version bytes.Buffer
	if code := run(context.Background(), []string{"version", "--data-dir", restored}, env(nil), &version, io.Discard); code != 0 ||
		!strings.Contains(version.String(), "up to date") {
		t.Errorf("relay version on the restored store: %q", version.String())
	}
	r2 := startConfigured(t, "--data-dir", restored)
	base := "http://" + r2.Addr
	if code, body := getStatus(t, base+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz on the restored store: %d %q", code, body)
	}
	var hc bytes.Buffer
	if code := run(context.Background(), []string{"healthcheck", "--listen", r2.Addr}, env(nil), &hc, io.Discard); code != 0 {
		t.Errorf("healthcheck on the restored store: exit %d", code)
	}
	c := mustDial(t, "ws://"+r2.Addr)
	if evs, err := c.query(nostr.Filter{IDs: []string{fx.note.ID}}, testTimeout); err != nil || len(evs) != 1 {
		t.Errorf("the note after restore: %d events, %v", len(evs), err)
	}
	if evs, err := c.query(nostr.Filter{Kinds: []int{443, 30443}}, testTimeout); err != nil || len(evs) != 0 {
		t.Errorf("KeyPackages after restore: %d events, %v", len(evs), err)
	}
	log := readLog(t, "ws://"+r2.Addr, fx.h)
	if len(log) != len(fx.group) {
		t.Fatalf("group log after restore: %+v", log)
	}
	for i, it := range log {
		if it.seq != int64(i+1) || it.id != fx.group[i] {
			t.Errorf("group log[%d] = %+v, want seq %d id %s", i, it, i+1, fx.group[i])
		}
	}
	next := groupEvent(t, fx.h)
	if ok, msg, err := c.publish(next, testTimeout); err != nil || !ok || msg != "seq:4" {
		t.Errorf("next group event after restore: ok=%v %q %v, want seq:4", ok, msg, err)
	}
	// The slot keeps its holder: another claim of it loses.
	if ok, msg, _ := c.publish(claim(t, fx.slotKey, groupEvent(t, fx.h), ""), testTimeout); ok || msg != "blocked: slot taken by "+fx.holder.ID {
		t.Errorf("claim after restore: ok=%v %q, want the restored holder to keep the slot", ok, msg)
	}
	// Neither KeyPackage can come back: the deleted one was tombstoned
	// before the backup, the live one on its way out of it.
	for name, kp := range map[string]nostr.Event{"deleted": fx.deletedKP, "live at backup": fx.liveKP} {
		if ok, msg, err := c.publish(kp, testTimeout); err != nil || ok || !strings.HasPrefix(msg, "blocked: ") {
			t.Errorf("re-publishing the %s KeyPackage after restore: ok=%v %q %v", name, ok, msg, err)
		}
	}
	// Its owner publishes a new one.
	if ok, msg, err := c.publish(newAuthor(t).slotEvent(t, slotID(2), 0), testTimeout); err != nil || !ok {
		t.Errorf("a new KeyPackage after restore: ok=%v %q %v", ok, msg, err)
	}
}

// TestBackupRefusals: relay backup refuses PostgreSQL naming the pg_dump
// command, a missing --out, and a --data-dir with no store.
func TestBackupRefusals(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"postgres", []string{"--database-url", "postgres://u:secret@db/burrow", "--out", "x"}, 2, pgDumpCommand()},
		{"no --out", []string{"--data-dir", t.TempDir()}, 2, "--out is required"},
		{"no store", []string{"--data-dir", t.TempDir(), "--out", filepath.Join(t.TempDir(), "b.db")}, 1, "no store to back up"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := run(context.Background(), append([]string{"backup"}, tt.args...), env(nil), io.Discard, &stderr)
			if code != tt.code || !strings.Contains(stderr.String(), tt.want) || strings.Contains(stderr.String(), "secret") {
				t.Errorf("exit %d %q, want %d and %q", code, stderr.String(), tt.code, tt.want)
			}
		})
	}
}

// TestPgDumpBackupLeavesKeyPackagesOut runs the PostgreSQL backup
// docs/operations.md documents (pgDumpArgs) against a relay's database,
// restores it into a fresh one with pg_restore, runs pgBuryLiveRefs, and
// starts the relay on it: the note and the group log are served, no
// KeyPackage, and neither KeyPackage can be re-published.
func TestPgDumpBackupLeavesKeyPackagesOut(t *testing.T) {
	dump, err := exec.LookPath("pg_dump")
	if err != nil {
		t.Skip("pg_dump not installed")
	}
	restore, err := exec.LookPath("pg_restore")
	if err != nil {
		t.Skip("pg_restore not installed")
	}
	src := testsvc.Postgres(t).URL
	r := startConfigured(t, "--database-url", src)
	fx := fillForBackup(t, mustDial(t, "ws://"+r.Addr))

	// The scrub backlog shows on /metrics (PostgreSQL only).
	if _, m := getStatus(t, "http://"+r.Addr+"/metrics"); !strings.Contains(m, "\nburrow_keypackage_scrub_debts ") ||
		!strings.Contains(m, "\nburrow_keypackage_scrub_oldest_seconds ") {
		t.Errorf("no scrub backlog metrics:\n%s", grepLines(m, "scrub"))
	}

	file := filepath.Join(t.TempDir(), "burrow.dump")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, dump, append(pgDumpArgs(file), src)...).CombinedOutput(); err != nil {
		t.Fatalf("pg_dump: %v\n%s", err, out)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, fx.liveKPContent[len(fx.liveKPContent)-48:]) || bytes.Contains(b, []byte(fx.liveKP.Sig)) {
		t.Fatal("the dump holds KeyPackage bytes")
	}

	dst := testsvc.Postgres(t).URL
	if out, err := exec.CommandContext(ctx, restore, "--no-owner", "--exit-on-error", "--dbname="+dst, file).CombinedOutput(); err != nil {
		t.Fatalf("pg_restore: %v\n%s", err, out)
	}
	conn, err := pgx.Connect(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, pgBuryLiveRefs); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	r2 := startConfigured(t, "--database-url", dst)
	c := mustDial(t, "ws://"+r2.Addr)
	if evs, err := c.query(nostr.Filter{IDs: []string{fx.note.ID}}, testTimeout); err != nil || len(evs) != 1 {
		t.Errorf("the note after restore: %d events, %v", len(evs), err)
	}
	if evs, err := c.query(nostr.Filter{Kinds: []int{443, 30443}}, testTimeout); err != nil || len(evs) != 0 {
		t.Errorf("KeyPackages after restore: %d events, %v", len(evs), err)
	}
	if log := readLog(t, "ws://"+r2.Addr, fx.h); len(log) != len(fx.group) || log[len(log)-1].seq != int64(len(fx.group)) {
		t.Errorf("group log after restore: %+v", log)
	}
	if ok, msg, err := c.publish(groupEvent(t, fx.h), testTimeout); err != nil || !ok || msg != "seq:4" {
		t.Errorf("next group event after restore: ok=%v %q %v, want seq:4", ok, msg, err)
	}
	for name, kp := range map[string]nostr.Event{"deleted": fx.deletedKP, "live at backup": fx.liveKP} {
		if ok, msg, err := c.publish(kp, testTimeout); err != nil || ok || !strings.HasPrefix(msg, "blocked: ") {
			t.Errorf("re-publishing the %s KeyPackage after restore: ok=%v %q %v", name, ok, msg, err)
		}
	}
}
