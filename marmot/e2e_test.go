package marmot_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/bench"
	"github.com/burrow-relay/burrow/keypackages"
	"github.com/burrow-relay/burrow/marmot"
	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/ordering"
	"github.com/burrow-relay/burrow/policy"
	"github.com/burrow-relay/burrow/server"
	"github.com/burrow-relay/burrow/storage/sqlite"
)

// startBurrow runs Burrow's relay (server, embedded SQLite, the KeyPackage
// policy, commit slots and ordered fan-out, wired as cmd/relay wires them)
// on a loopback port and returns its websocket URL.
func startBurrow(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)
	store, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "relay.db"), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	var fanoutErr error
	srv, err := server.New(server.Config{
		Hooks: []server.Hook{
			{Store: keypackages.Policy{}},
			{Envelope: ordering.Slots{MaxGroupContent: policy.DefaultLimits().MaxGroupContentLength}},
		},
		BroadcastVia: func(local server.Broadcaster) (server.Broadcaster, server.GroupWatcher) {
			f, err := ordering.NewFanout(local, ordering.FanoutConfig{Log: store, Logger: logger})
			if err != nil {
				fanoutErr = err
				return local, nil
			}
			return f, f
		},
		Logger: logger,
	}, store)
	if err == nil {
		err = fanoutErr
	}
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = hs.Shutdown(sctx)
		_ = store.Close()
	})
	return "ws://" + ln.Addr().String()
}

// startBaseline runs the stock khatru baseline (baseline/, its own module)
// as a process.
func startBaseline(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir, err := filepath.Abs(filepath.Join("..", "baseline"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("baseline module not found: %v", err)
	}
	url, stop, err := bench.StartBaseline(ctx, dir, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return url
}

// client is one simulated Marmot user on one relay.
type client struct {
	name   string
	acct   *marmot.Account
	c      *marmot.Client
	bundle *marmot.KeyPackageBundle
	kp     *nostr.Event
	g      *marmot.Group
	cursor uint64
	chats  []string
}

func newClient(t *testing.T, ctx context.Context, url, name string) *client {
	t.Helper()
	acct, err := marmot.NewAccount()
	if err != nil {
		t.Fatal(err)
	}
	c, err := marmot.Dial(ctx, url, marmot.ClientOptions{Signer: acct})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	u := &client{name: name, acct: acct, c: c}
	// Kind 10002 (KeyPackage relays: write) and 10050 (inbox), then a
	// KeyPackage in a fresh slot.
	for _, ev := range []*nostr.Event{
		{Kind: 10002, CreatedAt: nostr.Now(), Tags: nostr.Tags{{"r", url}}},
		{Kind: 10050, CreatedAt: nostr.Now(), Tags: nostr.Tags{{"relay", url}}},
	} {
		if err := acct.SignEvent(ev); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Publish(ctx, ev); err != nil {
			t.Fatalf("%s: publish kind %d: %v", name, ev.Kind, err)
		}
	}
	if u.bundle, err = marmot.NewKeyPackage(acct, marmot.KeyPackageOptions{}); err != nil {
		t.Fatal(err)
	}
	if u.kp, err = u.bundle.Event(acct, marmot.NewSlot(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, u.kp); err != nil {
		t.Fatalf("%s: publish KeyPackage: %v", name, err)
	}
	return u
}

// discover finds an account's KeyPackage the way an inviter does: its kind
// 10002 write relays, then the KeyPackages there.
func discover(t *testing.T, ctx context.Context, by *client, who *client) *nostr.Event {
	t.Helper()
	rl, err := by.c.RelayList(ctx, who.acct.PublicKey())
	if err != nil || !slices.Contains(rl.Write, by.c.URL()) {
		t.Fatalf("relay list of %s: %+v %v", who.name, rl, err)
	}
	kps, err := by.c.KeyPackages(ctx, who.acct.PublicKey(), time.Now())
	if err != nil || len(kps) == 0 {
		t.Fatalf("KeyPackages of %s: %d %v", who.name, len(kps), err)
	}
	return kps[0]
}

// commit publishes an Outgoing (as a commit-slot claim where the relay
// offers slots), applies it on OK true, then sends its Welcomes to the
// invitees' inbox relays.
func commit(t *testing.T, ctx context.Context, by *client, o *marmot.Outgoing, slotKey []byte) {
	t.Helper()
	if o.Event != nil {
		ok, err := by.c.PublishCommit(ctx, o.Event, slotKey)
		if err != nil {
			by.g.DiscardPending()
			t.Fatalf("%s: publish commit: %v", by.name, err)
		}
		if by.c.Info().Supports(marmot.ExtSinceSeq) && ok.Seq == 0 {
			t.Fatalf("%s: Burrow answered %q without a seq", by.name, ok.Message)
		}
		// Whether it went in a commit-slot claim or bare, what the relay
		// serves to the other members is the same kind 445 event.
		got, err := by.c.Fetch(ctx, nostr.Filter{IDs: []string{o.Event.ID}})
		if err != nil || len(got) != 1 || got[0].Event.String() != o.Event.String() {
			t.Fatalf("%s: the relay serves %d events for the commit (%v)", by.name, len(got), err)
		}
	}
	if _, err := by.g.ConfirmPublished(); err != nil {
		t.Fatal(err)
	}
	for _, w := range o.Welcomes {
		inbox, err := by.c.InboxRelays(ctx, w.Invitee)
		if err != nil || !slices.Contains(inbox, by.c.URL()) {
			t.Fatalf("inbox of the invitee: %v %v", inbox, err)
		}
		gw, err := marmot.WrapWelcome(by.acct, w.Rumor, w.Invitee, marmot.WrapOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := by.c.Publish(ctx, gw); err != nil {
			t.Fatalf("publish gift wrap: %v", err)
		}
	}
}

// join reads the member's gift wraps (AUTH when the relay asks), joins,
// and replaces the used KeyPackage in its slot.
func join(t *testing.T, ctx context.Context, u *client) {
	t.Helper()
	gws, err := u.c.GiftWraps(ctx, u.acct.PublicKey())
	if err != nil || len(gws) == 0 {
		t.Fatalf("%s: gift wraps: %d %v", u.name, len(gws), err)
	}
	w, err := marmot.UnwrapWelcome(gws[0], u.acct)
	if err != nil {
		t.Fatal(err)
	}
	if w.KeyPackageEvent != u.kp.ID {
		t.Fatalf("%s: Welcome for another KeyPackage", u.name)
	}
	if u.g, err = marmot.Join(u.acct, w, u.bundle, marmot.GroupOptions{}); err != nil {
		t.Fatalf("%s: join: %v", u.name, err)
	}
	used := u.kp
	if u.bundle, u.kp, err = marmot.ReplaceKeyPackage(ctx, []*marmot.Client{u.c}, u.acct, used, marmot.KeyPackageOptions{}); err != nil {
		t.Fatal(err)
	}
	if u.kp.Tags.GetD() != used.Tags.GetD() {
		t.Fatal("the replacement is not in the used KeyPackage's slot")
	}
	if u.c.Info().Supports(marmot.ExtSinceSeq) {
		// Burrow: the used KeyPackage is gone, the replacement served.
		got, err := u.c.Fetch(ctx, nostr.Filter{IDs: []string{used.ID, u.kp.ID}})
		if err != nil || len(got) != 1 || got[0].Event.ID != u.kp.ID {
			t.Fatalf("%s: after the replacement the relay serves %d of the two KeyPackages (%v)", u.name, len(got), err)
		}
	}
}

// sync reads the group's events after the member's cursor and processes
// them, collecting chat messages.
func sync(t *testing.T, ctx context.Context, u *client) {
	t.Helper()
	evs, next, err := u.c.GroupEvents(ctx, u.g.NostrGroupID(), u.cursor)
	if err != nil {
		t.Fatalf("%s: read group: %v", u.name, err)
	}
	u.cursor = next
	for _, d := range evs {
		r, err := u.g.Receive(d.Event)
		switch {
		case errors.Is(err, marmot.ErrDuplicate), errors.Is(err, marmot.ErrUndecryptable):
			continue
		case errors.Is(err, mls.ErrInactive):
			return // removed: nothing more to read
		case err != nil:
			t.Fatalf("%s: receive: %v", u.name, err)
		}
		for _, got := range append([]*marmot.Received{r}, r.Unlocked...) {
			if got.Kind == marmot.ReceivedApp {
				u.chats = append(u.chats, got.App.Content)
			}
		}
	}
}

func sameEpoch(t *testing.T, us ...*client) {
	t.Helper()
	for _, u := range us[1:] {
		if u.g.Epoch() != us[0].g.Epoch() || string(u.g.MLS().EpochAuthenticator()) != string(us[0].g.MLS().EpochAuthenticator()) {
			t.Fatalf("%s (epoch %d) and %s (epoch %d) disagree", us[0].name, us[0].g.Epoch(), u.name, u.g.Epoch())
		}
	}
}

// threeMembers runs the scenario through one relay: create, invite
// two, chat, update, remove, SelfRemove.
func threeMembers(t *testing.T, url string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alice, bob, carol := newClient(t, ctx, url, "alice"), newClient(t, ctx, url, "bob"), newClient(t, ctx, url, "carol")
	var err error
	if alice.g, err = marmot.CreateGroup(alice.acct, marmot.NewGroupParams{Name: "e2e", Relays: []string{url}}, marmot.GroupOptions{}); err != nil {
		t.Fatal(err)
	}
	slot := func(u *client) []byte {
		k, err := u.g.CommitSlotKey()
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	o, err := alice.g.Invite(discover(t, ctx, alice, bob))
	if err != nil {
		t.Fatal(err)
	}
	commit(t, ctx, alice, o, nil) // the founding commit is not published
	join(t, ctx, bob)

	o, err = alice.g.Invite(discover(t, ctx, alice, carol))
	if err != nil {
		t.Fatal(err)
	}
	commit(t, ctx, alice, o, slot(alice))
	join(t, ctx, carol)
	sync(t, ctx, bob)
	sameEpoch(t, alice, bob, carol)

	for _, u := range []*client{alice, bob, carol} {
		ev, err := u.g.SendChat("hi from " + u.name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := u.c.Publish(ctx, ev); err != nil {
			t.Fatalf("%s: publish chat: %v", u.name, err)
		}
	}
	for _, u := range []*client{alice, bob, carol} {
		sync(t, ctx, u)
	}
	for _, u := range []*client{alice, bob, carol} {
		var others []string
		for _, v := range []*client{alice, bob, carol} {
			if v != u {
				others = append(others, "hi from "+v.name)
			}
		}
		slices.Sort(u.chats)
		if !slices.Equal(u.chats, others) {
			t.Fatalf("%s read %q, want %q", u.name, u.chats, others)
		}
	}

	o, err = carol.g.SelfUpdate()
	if err != nil {
		t.Fatal(err)
	}
	commit(t, ctx, carol, o, slot(carol))
	sync(t, ctx, alice)
	sync(t, ctx, bob)
	sameEpoch(t, alice, bob, carol)

	o, err = alice.g.Remove(carol.acct.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	commit(t, ctx, alice, o, slot(alice))
	sync(t, ctx, bob)
	sameEpoch(t, alice, bob)
	if slices.Contains(bob.g.Members(), carol.acct.PublicKey()) {
		t.Fatal("carol still a member")
	}

	leave, err := bob.g.Leave()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.c.Publish(ctx, leave.Event); err != nil {
		t.Fatal(err)
	}
	sync(t, ctx, alice)
	o, err = alice.g.CommitProposals()
	if err != nil {
		t.Fatal(err)
	}
	commit(t, ctx, alice, o, slot(alice))
	sync(t, ctx, bob)
	if got := alice.g.Members(); !slices.Equal(got, []marmot.Pubkey{alice.acct.PublicKey()}) {
		t.Fatalf("members after SelfRemove: %d", len(got))
	}
	if bob.g.MLS().Active() == nil {
		t.Fatal("bob's group still active after his SelfRemove was committed")
	}
}

func TestThreeMembersThroughBurrow(t *testing.T) {
	url := startBurrow(t)
	threeMembers(t, url)
}

func TestThreeMembersThroughKhatruBaseline(t *testing.T) {
	url := startBaseline(t)
	threeMembers(t, url)
}
