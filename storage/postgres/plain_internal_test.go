package postgres

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/burrow-relay/burrow/storage"
	"github.com/burrow-relay/burrow/storage/storetest"
)

// TestPlainGroup holds the writer on a save waiting for a lock, queues
// saves of every outcome burrow_save_plain decides behind it, plus a
// replaceable event (burrow_save's), and lets them go as one group commit.
// Each save is answered as storage.Store says, the kind 445s of one group
// get consecutive numbers after those taken before, tag rows are written,
// everything stored shares one transaction, and burrow_save_plain ran.
func TestPlainGroup(t *testing.T) {
	pg := testsvc.Postgres(t)
	ctx := context.Background()
	trackFunctions(t, pg.URL)
	var commits storetest.CommitLog
	s, err := Open(ctx, Config{URL: pg.URL, Writers: 1, OnCommit: commits.Add})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })

	now := nostr.Now()
	a, banned, vanisher := storetest.NewAuthor(t), storetest.NewAuthor(t), storetest.NewAuthor(t)
	stored := a.Event(t, 1, now-100, nil, "stored before")
	deleted := a.Event(t, 1, now-99, nil, "named by a kind 5 before it arrives")
	vanished := vanisher.Event(t, 1, now-98, nil, "older than its author's request to vanish")
	before := []*nostr.Event{
		stored,
		a.Event(t, 5, now-90, nostr.Tags{{"e", deleted.ID}}, ""),
		vanisher.Event(t, 62, now-80, nostr.Tags{{"relay", "ALL_RELAYS"}}, ""),
		storetest.GroupEvent(t, a, "g1", now-70), // g1's counter is at 1
	}
	for _, ev := range before {
		if _, err := s.Save(ctx, ev); err != nil {
			t.Fatalf("save %d before the group: %v", ev.Kind, err)
		}
	}
	if _, err := s.Ban(ctx, banned.PubKey); err != nil {
		t.Fatal(err)
	}

	conn, tx, blocked := blockWriter(t, s, pg.URL, a.Event(t, 1, now-60, nil, "holds the writer"))

	twice := a.Event(t, 1, now-50, nil, "sent on two connections at once")
	tagged := a.Event(t, 1, now-49, nostr.Tags{{"t", "plain"}, {"expiration", "4102444800"}}, "tagged, expiring in 2100")
	g1 := []*nostr.Event{
		storetest.GroupEvent(t, storetest.NewAuthor(t), "g1", now-48),
		storetest.GroupEvent(t, storetest.NewAuthor(t), "g1", now-47),
		storetest.GroupEvent(t, storetest.NewAuthor(t), "g1", now-46),
	}
	g2 := storetest.GroupEvent(t, storetest.NewAuthor(t), "g2", now-45)
	profile := a.Event(t, 0, now-44, nil, `{"name":"replaceable, so burrow_save's"}`)
	cases := []struct {
		ev   *nostr.Event
		want error // nil: stored
	}{
		{twice, nil}, {twice, storage.ErrDuplicate}, // one of the two is stored
		{stored, storage.ErrDuplicate},
		{deleted, storage.ErrDeleted},
		{vanished, storage.ErrDeleted},
		{banned.Event(t, 1, now-43, nil, "from a banned author"), storage.ErrBanned},
		{tagged, nil},
		{g1[0], nil}, {g1[1], nil}, {g1[2], nil}, {g2, nil},
		{profile, nil},
	}
	type outcome struct {
		i   int
		res storage.Result
		err error
	}
	outcomes := make(chan outcome, len(cases))
	for i, c := range cases {
		go func() {
			res, err := s.Save(ctx, c.ev)
			outcomes <- outcome{i, res, err}
		}()
	}
	waitFor(t, "the saves to queue behind the blocked one", func() bool { return len(s.queues[0]) == len(cases) })
	committed := len(commits.Sizes(t))
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}

	results := make([]outcome, len(cases))
	for range cases {
		o := <-outcomes
		results[o.i] = o
	}
	twiceErrs := []error{results[0].err, results[1].err}
	if !slices.Contains(twiceErrs, nil) || !slices.ContainsFunc(twiceErrs, func(err error) bool { return errors.Is(err, storage.ErrDuplicate) }) {
		t.Errorf("the event saved twice in one group: %v; want one stored and one duplicate", twiceErrs)
	}
	for i, c := range cases[2:] {
		if o := results[i+2]; !errors.Is(o.err, c.want) || (c.want == nil && o.err != nil) {
			t.Errorf("save of kind %d %s = %v; want %v", c.ev.Kind, c.ev.Content, o.err, c.want)
		}
	}
	var g1Seqs []int64
	for i := range g1 {
		g1Seqs = append(g1Seqs, results[7+i].res.Seq)
	}
	slices.Sort(g1Seqs)
	if !slices.Equal(g1Seqs, []int64{2, 3, 4}) {
		t.Errorf("g1's three kind 445s were numbered %v; want 2, 3 and 4", g1Seqs)
	}
	if seq := results[10].res.Seq; seq != 1 {
		t.Errorf("g2's first kind 445 was numbered %d; want 1", seq)
	}

	if n, err := s.Count(ctx, nostr.Filter{Tags: nostr.TagMap{"t": {"plain"}}}); err != nil || n != 1 {
		t.Errorf("count of the tagged event by its tag = %d, %v; want 1", n, err)
	}
	var expires int64
	if err := conn.QueryRow(ctx, `SELECT expires_at FROM events WHERE id = decode($1, 'hex')`, tagged.ID).Scan(&expires); err != nil || expires != 4102444800 {
		t.Errorf("the tagged event's expiry = %d, %v; want 4102444800", expires, err)
	}
	var xmins int
	if err := conn.QueryRow(ctx, `SELECT count(DISTINCT xmin::text) FROM events WHERE encode(id, 'hex') = ANY($1)`,
		[]string{twice.ID, tagged.ID, g1[0].ID, g1[1].ID, g1[2].ID, g2.ID, profile.ID}).Scan(&xmins); err != nil || xmins != 1 {
		t.Errorf("the group's events were stored in %d transactions (%v); want 1", xmins, err)
	}
	waitCalled(t, conn, "burrow_save_plain")
	// The blocked save's commit, then the whole group's (Config.OnCommit).
	if got := commits.Sizes(t)[committed:]; !slices.Equal(got, []int{1, len(cases)}) {
		t.Errorf("OnCommit reported commits of %v writes; want [1 %d]", got, len(cases))
	}
}

// trackFunctions makes the database at url count calls of PL/pgSQL
// functions (pg_stat_user_functions) in the sessions opened after it.
func trackFunctions(t *testing.T, url string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET track_functions = ''pl''', current_database()); END $$`); err != nil {
		t.Fatal(err)
	}
}

// waitCalled waits until the statistics show a call of the function name;
// sessions report them shortly after their transactions end.
func waitCalled(t *testing.T, conn *pgx.Conn, name string) {
	t.Helper()
	waitFor(t, name+" to show in the function statistics", func() bool {
		var calls int
		err := conn.QueryRow(context.Background(), `SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions WHERE funcname = $1`, name).Scan(&calls)
		return err == nil && calls > 0
	})
}

// TestPlainRaceWithAnotherInstance lets two instances save one kind 445 at
// once, both past the refusal checks before either commits: both wait for
// the group's counter row, held by the test, inside burrow_save_plain's
// statement. The first in line stores it; the second's insert then fails
// its whole statement (no seq may be given back there), and its group,
// three other events with it, is run again whole, once: its checks now
// see the event and refuse it as a duplicate, and the others are stored
// in that one commit, not one transaction each. The group's numbers stay
// gapless.
func TestPlainRaceWithAnotherInstance(t *testing.T) {
	pg := testsvc.Postgres(t)
	ctx := context.Background()
	var loserCommits storetest.CommitLog
	open := func(onCommit func(int, time.Duration)) *Store {
		s, err := Open(ctx, Config{URL: pg.URL, Writers: 1, OnCommit: onCommit})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	first, second := open(nil), open(loserCommits.Add)
	if res, err := first.Save(ctx, storetest.GroupEvent(t, storetest.NewAuthor(t), "g", nostr.Now()-1)); err != nil || res.Seq != 1 {
		t.Fatalf("the group's first event = %+v, %v; want seq 1", res, err)
	}

	ev := storetest.GroupEvent(t, storetest.NewAuthor(t), "g", nostr.Now())
	conn, tx := holdTx(t, pg.URL, `SELECT 1 FROM group_seqs WHERE h = 'g' FOR UPDATE`)
	waiting := func(n int) func() bool {
		return func() bool {
			var got int
			err := conn.QueryRow(ctx, `SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted`).Scan(&got)
			return err == nil && got == n
		}
	}
	type outcome struct {
		res storage.Result
		err error
	}
	firstDone := make(chan outcome, 1)
	go func() {
		res, err := first.Save(ctx, ev)
		firstDone <- outcome{res, err}
	}()
	waitFor(t, "the first instance's save to wait for the group's counter", waiting(1))

	// The second instance's group: the same event and three others,
	// queued together behind a save held on its author's lock.
	_, lockTx, blocked := blockWriter(t, second, pg.URL, storetest.NewAuthor(t).Event(t, 1, nostr.Now(), nil, "holds the writer"))
	others := []*nostr.Event{
		storetest.NewAuthor(t).Event(t, 1, nostr.Now(), nil, "saved beside the race"),
		storetest.GroupEvent(t, storetest.NewAuthor(t), "g2", nostr.Now()),
		storetest.NewAuthor(t).Event(t, 1, nostr.Now(), nostr.Tags{{"t", "race"}}, "also beside it"),
	}
	group := append([]*nostr.Event{ev}, others...)
	results := make([]outcome, len(group))
	var wg sync.WaitGroup
	for i, e := range group {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := second.Save(ctx, e)
			results[i] = outcome{res, err}
		}()
	}
	waitFor(t, "the second instance's group to queue", func() bool { return len(second.queues[0]) == len(group) })
	committed := len(loserCommits.Sizes(t))
	if err := lockTx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both instances to wait for the group's counter", waiting(2))
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	if o := <-firstDone; o.err != nil || o.res.Seq != 2 {
		t.Errorf("the first instance's save = %+v, %v; want stored with seq 2", o.res, o.err)
	}
	if o := results[0]; !errors.Is(o.err, storage.ErrDuplicate) {
		t.Errorf("the second instance's save of the same event = %+v, %v; want a duplicate", o.res, o.err)
	}
	for i, o := range results[1:] {
		if o.err != nil {
			t.Errorf("the second instance's other save %d: %v", i, o.err)
		}
	}
	if seq := results[2].res.Seq; seq != 1 {
		t.Errorf("g2's first event was numbered %d; want 1", seq)
	}
	// One commit for the held save, then the group of four in one more:
	// saved one by one it would be four commits of one.
	if got := loserCommits.Sizes(t)[committed:]; !slices.Equal(got, []int{1, len(group)}) {
		t.Errorf("the second instance committed %v writes; want [1 %d]", got, len(group))
	}
	next := storetest.GroupEvent(t, storetest.NewAuthor(t), "g", nostr.Now())
	if res, err := first.Save(ctx, next); err != nil || res.Seq != 3 {
		t.Errorf("the group's next event = %+v, %v; want seq 3", res, err)
	}
}

// TestPlainSavesOnANewRelayRunOnIndexes saves plain events on a new relay's
// empty tables, where the plans of burrow_save_plain are made and then kept
// for the session, and checks that each of its statements reads by index
// conditions. Each EXISTS of burrow_refused could otherwise be planned as a
// hash of its whole table (cheap while the table is empty, a full read per
// group once it has grown).
func TestPlainSavesOnANewRelayRunOnIndexes(t *testing.T) {
	pg := testsvc.Postgres(t)
	ctx := context.Background()
	requireAutoExplain(t, pg.URL)
	w := &planWatcher{}
	s, err := Open(ctx, Config{URL: pg.URL, Writers: 1, poolHook: w.hook})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w.take()

	a := storetest.NewAuthor(t)
	base := nostr.Now() // one clock reading: eight distinct notes however slow the loop
	for i := range 8 {
		for _, ev := range []*nostr.Event{
			a.Event(t, 1, base-nostr.Timestamp(i), nostr.Tags{{"t", "x"}}, "note"),
			storetest.GroupEvent(t, storetest.NewAuthor(t), "g", base),
		} {
			if _, err := s.Save(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	checked := 0
	for _, p := range w.take() {
		if !strings.Contains(p.Query, "burrow_refused(i.id") {
			continue
		}
		checked++
		if reads := fullReads(p.Plan, false); len(reads) > 0 {
			t.Errorf("%q in\n%s", reads, p.Query)
		}
	}
	if checked < 16 {
		t.Fatalf("%d plans of burrow_save_plain's statement seen; want one per save (16)", checked)
	}
}
