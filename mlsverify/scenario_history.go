package mlsverify

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/marmot"
)

// historyRepair: a member goes offline while the group commits and
// chats, then catches up from the relay alone: with since_seq where the
// relay advertises it, NIP-77 where advertised, a plain REQ otherwise.
// Nothing may be missed or applied twice; the report counts what the
// relay's answers made necessary (events read again, duplicates, seq gaps).
func historyRepair(s *sim) error {
	r := s.res
	n := s.cfg.Members
	ms, err := s.grow(n, growBatch)
	if err != nil {
		return err
	}
	admin, off := ms[0], ms[n-1]
	online := ms[:n-1]
	off.setOffline(true)
	// What was published before the member went away: reading any of it
	// again is a re-read the relay's answer made necessary.
	before := map[string]bool{}
	held := s.publishedSince(0)
	for _, ev := range held {
		before[ev.ID] = true
	}
	const rounds = 3
	var ids [][32]byte
	for i := range rounds {
		if err := s.commit(online[1+i%(len(online)-1)], (*marmot.Group).SelfUpdate); err != nil {
			return err
		}
		got, err := s.chat(talkers(online), fmt.Sprintf("while %s is away, round %d", off.name, i))
		if err != nil {
			return err
		}
		ids = append(ids, got...)
		s.progress(false, "%s offline; the group is at epoch %d", off.name, epochOf(admin))
	}
	r.metric("offline_commits", rounds)
	r.metric("offline_messages", float64(len(ids)))

	if slices.Contains(s.info.SupportedNIPs, 77) {
		s.checkNIP77(off, held, s.publishedSince(len(held)))
	} else {
		r.check("NIP-77 reconciliation", StatusSkip, "not advertised (NIP-11 supported_nips has no 77)")
	}

	// Back online: read what was missed, from where this member stopped.
	off.mu.Lock()
	cursor := off.lastSeq
	if !s.seq {
		cursor = off.lastCreated
	}
	off.mu.Unlock()
	t0 := time.Now()
	evs, _, err := off.conn.groupEvents(s.ctx, s.h, cursor)
	if err != nil {
		r.check("catch-up read", StatusFail, "%s", describe(err, nil))
		return nil
	}
	seen := map[string]bool{}
	rereads, dups, gaps, outOfOrder := 0, 0, 0, 0
	var last uint64 = cursor
	for _, d := range evs {
		if seen[d.Event.ID] {
			dups++
		}
		if before[d.Event.ID] {
			rereads++
		}
		seen[d.Event.ID] = true
		if s.seq {
			switch {
			case d.Seq <= last:
				outOfOrder++
			case d.Seq > last+1:
				gaps += int(d.Seq - last - 1)
			}
			last = max(last, d.Seq)
		}
		off.push(delivery{ev: d.Event, seq: d.Seq, at: time.Now()})
	}
	s.idle(off)
	catchUp := time.Since(t0)
	off.mu.Lock()
	twice := off.twice
	off.mu.Unlock()
	missing := 0
	for _, id := range ids {
		if !off.has(id) {
			missing++
		}
	}
	e, a, _ := off.state()
	ae, aa, _ := admin.state()
	r.expect("nothing missed", missing == 0 && e == ae && bytes.Equal(a, aa), StatusFail,
		"one %s read of %d events brought %s from its last %s to epoch %d (group at %d); %d of %d messages missing",
		s.readMode(), len(evs), off.name, cursorName(s.seq), e, ae, missing, len(ids))
	r.expect("nothing applied twice", twice == 0, StatusFail, "%d payloads delivered twice", twice)
	r.metric("catchup_events", float64(len(evs)))
	r.metric("catchup_rereads", float64(rereads))
	r.metric("catchup_duplicates", float64(dups))
	r.metric("catchup_ms", millis(catchUp))
	if s.seq {
		r.expect("read in seq order", outOfOrder == 0, StatusFail, "%d events out of order or repeated", outOfOrder)
		r.expect("no gap in seq", gaps == 0, StatusWarn, "%d seq numbers missing (deleted or expired events leave holes)", gaps)
		r.metric("seq_gaps", float64(gaps))
	} else {
		r.check("read in seq order", StatusSkip, "since_seq not advertised: the relay has no sequence, events come newest first by created_at and the members order them by their MLS content")
		r.note("a plain REQ cannot resume exactly: %d events from before the member went away were read again, and gaps cannot be detected", rereads)
	}
	if dups > 0 {
		r.note("the relay sent %d events twice in one read", dups)
	}
	off.setOffline(false)
	if err := s.converge(admin); err != nil {
		return err
	}
	return s.commit(off, (*marmot.Group).SelfUpdate)
}

// checkNIP77 reconciles, as a Marmot client repairing history does (MDK:
// per relay, per h), the group's kind 445 events the offline member held
// with the relay's: the relay must list exactly what was published while
// the member was away as missing, and nothing the member holds as unknown.
func (s *sim) checkNIP77(off *member, held, missed []*nostr.Event) {
	r := s.res
	group := hex.EncodeToString(s.h[:])
	ofGroup := func(evs []*nostr.Event) []*nostr.Event {
		return slices.DeleteFunc(slices.Clone(evs), func(ev *nostr.Event) bool {
			return ev.Kind != marmot.KindGroupEvent || ev.Tags.GetFirst([]string{"h", group}) == nil
		})
	}
	held, missed = ofGroup(held), ofGroup(missed)
	f := nostr.Filter{Kinds: []int{marmot.KindGroupEvent}, Tags: nostr.TagMap{"h": {group}}}
	t0 := time.Now()
	got, err := reconcileNIP77(s.ctx, off.conn.url, f, held, s.cfg.Timeout)
	if err != nil {
		r.check("NIP-77 reconciliation", StatusFail, "advertised, but reconciling the group's kind 445 events failed: %v", err)
		return
	}
	want := make([]string, 0, len(missed))
	for _, ev := range missed {
		want = append(want, ev.ID)
	}
	slices.Sort(want)
	r.expect("NIP-77 reconciliation", len(got.have) == 0 && slices.Equal(got.need, want), StatusFail,
		"%s held %d of the group's events from before; the relay listed %d it lacks (%d were published while it was away) and %d it did not know (want 0); NEG-MSG rounds: %d",
		off.name, len(held), len(got.need), len(want), len(got.have), got.rounds)
	r.metric("nip77_rounds", float64(got.rounds))
	r.metric("nip77_ms", millis(time.Since(t0)))
}

func (s *sim) readMode() string {
	if s.seq {
		return "since_seq"
	}
	return "plain REQ"
}

func cursorName(seq bool) string {
	if seq {
		return "seq"
	}
	return "created_at"
}

// idle waits until m has processed everything queued.
func (s *sim) idle(m *member) {
	deadline := time.Now().Add(4 * s.cfg.Timeout)
	for m.pending() > 0 && time.Now().Before(deadline) {
		if sleep(s.ctx, 5*time.Millisecond) != nil {
			return
		}
	}
}
