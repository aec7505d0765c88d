package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/nbd-wtf/go-nostr"
)

// runSyncCommand runs `relay sync` in process and returns its exit status,
// stdout and stderr.
func runSyncCommand(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code := run(ctx, append([]string{"sync", "--timeout", "10s"}, args...), env(nil), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// syncCounts reads the summary's "name: count" lines (have, need, pulled,
// refused) and its refusal lines ("  <n>  <reason>").
func syncCounts(t *testing.T, out string) (counts map[string]int, refusals map[string]int) {
	t.Helper()
	counts, refusals = map[string]int{}, map[string]int{}
	line := regexp.MustCompile(`^([a-z ]+):\s+(\d+)`)
	reason := regexp.MustCompile(`^\s+(\d+)  (.+)$`)
	section := ""
	for _, l := range strings.Split(out, "\n") {
		if m := line.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[2])
			counts[m[1]] = n
			section = m[1]
			continue
		}
		if m := reason.FindStringSubmatch(l); m != nil && section == "refused" {
			n, _ := strconv.Atoi(m[1])
			refusals[m[2]] = n
		}
	}
	return counts, refusals
}

// stoppableRelay is an in-process relay that can be stopped and started
// again on its store (an embedded store must be free for relay sync).
type stoppableRelay struct {
	cfg config
	r   *runningRelay
}

func (s *stoppableRelay) start(t *testing.T) liveRelay {
	t.Helper()
	r, err := startRelay(context.Background(), s.cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	s.r = r
	t.Cleanup(func() { s.stop(t) })
	url := "ws://" + r.Addr
	client, err := dial(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return liveRelay{ws: url, http: "http://" + r.Addr, client: client}
}

// count is how many events the running relay's store holds.
func (s *stoppableRelay) count(t *testing.T) int {
	t.Helper()
	n, err := s.r.store.Count(context.Background(), nostr.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}

func (s *stoppableRelay) stop(t *testing.T) {
	t.Helper()
	if s.r == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.r.Close(ctx); err != nil {
		t.Errorf("close: %v", err)
	}
	s.r = nil
}

// groupEventAt is a kind 445 of group h created at, signed with a one-use
// key.
func groupEventAt(t *testing.T, h string, at nostr.Timestamp) nostr.Event {
	t.Helper()
	body := make([]byte, 64)
	_, _ = rand.Read(body)
	return newAuthor(t).sign(t, 445, base64.StdEncoding.EncodeToString(body), nostr.Tags{{"h", h}}, at)
}

// TestSyncConvergesTwoBackends: A on embedded SQLite and B on PostgreSQL
// each hold events the other lacks, kind 445 of two groups among them, and
// a KeyPackage both held that its author then deleted on A. relay sync
// into A from B (A stopped, as an embedded store must be), after a dry run
// that reports the same have and need and changes nothing, pulls B's
// events, refuses the deleted KeyPackage ("blocked: deleted") and numbers
// the pulled group events after A's own, oldest first; relay sync into B
// from A (B running, on its shared database) pulls A's events, the
// deletion among them. Both then hold exactly the union less the deleted
// KeyPackage, and a dry run finds nothing to do.
func TestSyncConvergesTwoBackends(t *testing.T) {
	dirA := t.TempDir()
	cfgA := testConfig(t)
	cfgA.DataDir = dirA
	relayA := &stoppableRelay{cfg: cfgA}
	a := relayA.start(t)
	dbB := testsvc.Postgres(t).URL
	cfgB := testConfig(t)
	cfgB.DatabaseURL = dbB
	b := (&stoppableRelay{cfg: cfgB}).start(t)

	now := nostr.Now()
	noteAuthor := newAuthor(t)
	note := func(text string, ago nostr.Timestamp) nostr.Event {
		return noteAuthor.sign(t, 1, text, nil, now-ago)
	}
	g1, g2 := newGroupID(), newGroupID()
	common := note("on both", 100)
	onlyA := []nostr.Event{note("only on A, 1", 90), note("only on A, 2", 80),
		groupEventAt(t, g1, now-50), groupEventAt(t, g1, now-40), groupEventAt(t, g1, now-30)}
	onlyB := []nostr.Event{note("only on B, 1", 85), note("only on B, 2", 75),
		groupEventAt(t, g1, now-45), groupEventAt(t, g1, now-35),
		groupEventAt(t, g2, now-60), groupEventAt(t, g2, now-20), groupEventAt(t, g2, now-10)}
	kpAuthor := newAuthor(t)
	kp := kpAuthor.slotEvent(t, slotID(0), now-70)
	for _, ev := range append([]nostr.Event{common, kp}, onlyA...) {
		a.mustPublish(t, ev)
	}
	for _, ev := range append([]nostr.Event{common, kp}, onlyB...) {
		b.mustPublish(t, ev)
	}
	deletion := kpAuthor.sign(t, 5, "", nostr.Tags{{"e", kp.ID}, {"k", "30443"}}, now-5)
	a.mustPublish(t, deletion)
	onlyA = append(onlyA, deletion)
	before := a.ids(t, nostr.Filter{})

	union := []string{common.ID}
	for _, ev := range append(slices.Clone(onlyA), onlyB...) {
		union = append(union, ev.ID)
	}
	slices.Sort(union)

	// Into A from B.
	relayA.stop(t)
	intoA := []string{"--from", b.ws, "--data-dir", dirA}
	code, out, errOut := runSyncCommand(t, append(intoA, "--dry-run")...)
	if code != 0 {
		t.Fatalf("dry run into A: exit %d\n%s%s", code, out, errOut)
	}
	dry, _ := syncCounts(t, out)
	// have: A's five and the deletion; need: B's seven and the KeyPackage.
	if dry["have"] != len(onlyA) || dry["need"] != len(onlyB)+1 || dry["pulled"] != 0 {
		t.Fatalf("dry run into A counted %v, want have %d, need %d, pulled 0:\n%s", dry, len(onlyA), len(onlyB)+1, out)
	}
	a = relayA.start(t)
	if got := a.ids(t, nostr.Filter{}); !slices.Equal(got, before) {
		t.Fatalf("the dry run changed A: %d events, %d before", len(got), len(before))
	}
	relayA.stop(t)

	code, out, errOut = runSyncCommand(t, intoA...)
	if code != 0 {
		t.Fatalf("sync into A: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("relay sync into A:\n%s%s", errOut, out)
	if !strings.Contains(errOut, "relay sync: reconciled") {
		t.Errorf("no progress line on stderr:\n%s", errOut)
	}
	got, refusals := syncCounts(t, out)
	if got["have"] != dry["have"] || got["need"] != dry["need"] || got["pulled"] != len(onlyB) || got["refused"] != 1 ||
		refusals["blocked: deleted"] != 1 {
		t.Fatalf("sync into A counted %v, refusals %v; want have %d, need %d, pulled %d, refused 1 (blocked: deleted):\n%s",
			got, refusals, dry["have"], dry["need"], len(onlyB), out)
	}
	a = relayA.start(t)
	if ids := a.ids(t, nostr.Filter{}); !slices.Equal(ids, union) {
		t.Fatalf("A holds %d events after the sync, want the union of %d", len(ids), len(union))
	}
	if ids := a.ids(t, nostr.Filter{IDs: []string{kp.ID}}); len(ids) != 0 {
		t.Fatal("the KeyPackage deleted on A came back")
	}
	// On A the pulled group events follow A's own, oldest first.
	wantLog := func(t *testing.T, url, h string, ids ...string) {
		t.Helper()
		log := readLog(t, url, h)
		var got []string
		for i, it := range log {
			if it.seq != int64(i+1) {
				t.Fatalf("group log on %s: seq %d at position %d", url, it.seq, i+1)
			}
			got = append(got, it.id)
		}
		if !slices.Equal(got, ids) {
			t.Fatalf("group log on %s = %v, want %v", url, got, ids)
		}
	}
	wantLog(t, a.ws, g1, onlyA[2].ID, onlyA[3].ID, onlyA[4].ID, onlyB[2].ID, onlyB[3].ID)
	wantLog(t, a.ws, g2, onlyB[4].ID, onlyB[5].ID, onlyB[6].ID)
	if ok, msg, err := a.client.publish(onlyB[3], testTimeout); err != nil || !ok || msg != "seq:5" {
		t.Fatalf("re-sending a pulled group event to A = %v %q %v, want OK true seq:5", ok, msg, err)
	}

	// Into B from A, with B running.
	intoB := []string{"--from", a.ws, "--database-url", dbB}
	code, out, errOut = runSyncCommand(t, intoB...)
	if code != 0 {
		t.Fatalf("sync into B: exit %d\n%s%s", code, out, errOut)
	}
	got, refusals = syncCounts(t, out)
	if got["have"] != 1 || got["need"] != len(onlyA) || got["pulled"] != len(onlyA) || got["refused"] != 0 {
		t.Fatalf("sync into B counted %v, refusals %v; want have 1 (the KeyPackage), need %d, pulled %d, refused 0:\n%s",
			got, refusals, len(onlyA), len(onlyA), out)
	}
	if ids := b.ids(t, nostr.Filter{}); !slices.Equal(ids, union) {
		t.Fatalf("B holds %d events after the sync, want the union of %d", len(ids), len(union))
	}
	wantLog(t, b.ws, g1, onlyB[2].ID, onlyB[3].ID, onlyA[2].ID, onlyA[3].ID, onlyA[4].ID)

	// Nothing is left to do either way.
	code, out, errOut = runSyncCommand(t, append(intoB, "--dry-run")...)
	if got, _ := syncCounts(t, out); code != 0 || got["have"] != 0 || got["need"] != 0 {
		t.Fatalf("dry run into B after converging: exit %d, counts %v\n%s%s", code, got, out, errOut)
	}
	relayA.stop(t)
	code, out, errOut = runSyncCommand(t, append(intoA, "--dry-run")...)
	if got, _ := syncCounts(t, out); code != 0 || got["have"] != 0 || got["need"] != 0 {
		t.Fatalf("dry run into A after converging: exit %d, counts %v\n%s%s", code, got, out, errOut)
	}
}

// TestSyncRefusals: a remote without NIP-77 is a clear error (exit status
// 1) that leaves the store alone; bad flags are usage errors (2); an
// embedded store a relay is running on is refused (1).
func TestSyncRefusals(t *testing.T) {
	noNeg := testConfig(t)
	noNeg.DataDir = t.TempDir()
	noNeg.Negentropy = false
	remote := (&stoppableRelay{cfg: noNeg}).start(t)
	remote.mustPublish(t, newAuthor(t).sign(t, 1, "not pulled", nil, 0))

	running := testConfig(t)
	running.DataDir = t.TempDir()
	(&stoppableRelay{cfg: running}).start(t)

	local := t.TempDir()
	tests := []struct {
		name string
		args []string
		code int
		want []string // substrings of stderr
	}{
		{"a remote without NIP-77", []string{"--from", remote.ws, "--data-dir", local}, 1,
			[]string{"does not speak NIP-77", "NIP-77 (negentropy) is not enabled on this relay", "does not list 77"}},
		{"no --from", []string{"--data-dir", local}, 2, []string{"--from is required"}},
		{"an http URL", []string{"--from", "http://127.0.0.1:1", "--data-dir", local}, 2, []string{"want a ws:// or wss:// URL"}},
		{"a filter with a limit", []string{"--from", remote.ws, "--data-dir", local, "--filter", `{"limit":5}`}, 2, []string{"limit has no meaning"}},
		{"a filter that is not JSON", []string{"--from", remote.ws, "--data-dir", local, "--filter", `kinds:445`}, 2, []string{"want a NIP-01 filter"}},
		{"the store of a running relay", []string{"--from", remote.ws, "--data-dir", running.DataDir}, 1, []string{"data directory in use"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runSyncCommand(t, tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tt.code, out, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr does not say %q:\n%s", w, errOut)
				}
			}
		})
	}
	// Nothing was pulled into the local store.
	code, out, errOut := runSyncCommand(t, "--from", "ws://127.0.0.1:1", "--data-dir", local, "--timeout", "2s")
	if code != 1 || !strings.Contains(errOut, "connecting to") {
		t.Fatalf("sync from a closed port: exit %d\n%s%s", code, out, errOut)
	}
	l := (&stoppableRelay{cfg: func() config { c := testConfig(t); c.DataDir = local; return c }()}).start(t)
	if ids := l.ids(t, nostr.Filter{}); len(ids) != 0 {
		t.Fatalf("the local store holds %d events after failed syncs", len(ids))
	}
}

// TestSyncPullsInRoundsAndBatches: a remote holding 1,500 events (300 of
// them one group's kind 445, spread over time) and answering REQs of at
// most 64 ids (--max-limit), and a local store holding 200 of them plus 30
// of its own: the reconciliation takes several rounds, the fetch many
// REQs, and with room to hold only a few events in memory the rest are
// fetched again in created_at order. Everything missing is pulled, and the
// group's events get their seqs here oldest first.
func TestSyncPullsInRoundsAndBatches(t *testing.T) {
	remoteCfg := testConfig(t)
	remoteCfg.DataDir = t.TempDir()
	remoteCfg.Limits.MaxLimit = 64
	remote := &stoppableRelay{cfg: remoteCfg}
	rl := remote.start(t)
	localCfg := testConfig(t)
	localCfg.DataDir = t.TempDir()
	local := &stoppableRelay{cfg: localCfg}
	local.start(t)

	ctx := context.Background()
	h := newGroupID()
	base := nostr.Now() - 3600
	au := newAuthor(t)
	var all []nostr.Event
	for i := range 1500 {
		at := base + nostr.Timestamp((i*7919)%1500) // not in publication order
		if i%5 == 0 {
			all = append(all, groupEventAt(t, h, at))
		} else {
			all = append(all, au.sign(t, 1, "event "+strconv.Itoa(i), nil, at))
		}
	}
	ingest := func(r *stoppableRelay, ev nostr.Event) {
		t.Helper()
		if ok, msg := r.r.srv.Ingest(ctx, &ev); !ok {
			t.Fatalf("Ingest: %q", msg)
		}
	}
	// The local store gets every 7th event first (no group events among
	// them, so its seqs are the pulled ones'), then 30 of its own.
	var localOnly int
	for i, ev := range all {
		ingest(remote, ev)
		if i%7 == 1 && ev.Kind == 1 {
			ingest(local, ev)
		}
	}
	for i := range 30 {
		ingest(local, au.sign(t, 1, "local "+strconv.Itoa(i), nil, base+nostr.Timestamp(i)))
		localOnly++
	}
	held := local.count(t)
	local.stop(t)

	var stdout, stderr bytes.Buffer
	o := syncOptions{from: rl.ws, filter: "{}", timeout: 10 * time.Second, progress: 50 * time.Millisecond, hold: 20 << 10}
	f, err := o.validate()
	if err != nil {
		t.Fatal(err)
	}
	if err := runSync(ctx, localCfg, o, f, &stdout, &stderr); err != nil {
		t.Fatalf("sync: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	got, _ := syncCounts(t, stdout.String())
	need := len(all) - (held - localOnly)
	if got["have"] != localOnly || got["need"] != need || got["pulled"] != need || got["refused"] != 0 {
		t.Fatalf("counted %v; want have %d, need %d, pulled %d, refused 0\n%s", got, localOnly, need, need, stdout.String())
	}
	if !strings.Contains(stderr.String(), "reconciled in") || strings.Contains(stderr.String(), "reconciled in 1 rounds") {
		t.Errorf("want a reconciliation of several rounds:\n%s", stderr.String())
	}

	l := local.start(t)
	if n := local.count(t); n != len(all)+localOnly {
		t.Fatalf("local holds %d events, want %d", n, len(all)+localOnly)
	}
	var groupEvents []nostr.Event
	for _, ev := range all {
		if ev.Kind == 445 {
			groupEvents = append(groupEvents, ev)
		}
	}
	slices.SortFunc(groupEvents, func(a, b nostr.Event) int {
		if a.CreatedAt != b.CreatedAt {
			return int(a.CreatedAt - b.CreatedAt)
		}
		return strings.Compare(a.ID, b.ID)
	})
	log := readLog(t, l.ws, h)
	if len(log) != len(groupEvents) {
		t.Fatalf("group log holds %d events, want %d", len(log), len(groupEvents))
	}
	for i, it := range log {
		if it.seq != int64(i+1) || it.id != groupEvents[i].ID {
			t.Fatalf("group log position %d: seq %d id %s, want seq %d id %s (oldest first)", i, it.seq, it.id, i+1, groupEvents[i].ID)
		}
	}
}

// TestSyncHelp: `relay sync --help` lists its own flags first, then the
// relay's (the store flags among them), each in the common style with its
// variable.
func TestSyncHelp(t *testing.T) {
	var out bytes.Buffer
	if code := run(context.Background(), []string{"sync", "--help"}, env(nil), &out, io.Discard); code != 0 {
		t.Fatalf("exit %d", code)
	}
	line := regexp.MustCompile(`^  --[a-z0-9-]+  \(env RELAY_[A-Z0-9_]+\)$`)
	var flags []string
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, "  -") {
			if !line.MatchString(l) {
				t.Errorf("flag line %q is not in the common style", l)
			}
			flags = append(flags, l)
		}
	}
	want := []string{"  --from  (env RELAY_SYNC_FROM)", "  --filter  (env RELAY_SYNC_FILTER)", "  --dry-run  (env RELAY_SYNC_DRY_RUN)", "  --timeout  (env RELAY_SYNC_TIMEOUT)"}
	if len(flags) < len(want) || !slices.Equal(flags[:len(want)], want) {
		t.Fatalf("relay sync --help starts with %v, want %v", flags[:min(len(flags), len(want))], want)
	}
	for _, f := range []string{"  --data-dir  (env RELAY_DATA_DIR)", "  --database-url  (env RELAY_DATABASE_URL)", "  --redis-url  (env RELAY_REDIS_URL)"} {
		if !slices.Contains(flags, f) {
			t.Errorf("relay sync --help lacks %q", f)
		}
	}
}
