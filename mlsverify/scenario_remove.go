package mlsverify

import (
	"fmt"
	"slices"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/marmot"
)

// removeAndForwardSecrecy: an admin removes one member and another leaves
// by SelfRemove; then the group sends messages and commits. Neither
// former member may open anything sent after its removal with any key it
// ever held, and the others must read all of it.
func removeAndForwardSecrecy(s *sim) error {
	r := s.res
	n := s.cfg.Members
	ms, err := s.grow(n, growBatch)
	if err != nil {
		return err
	}
	admin, victim, leaver := ms[0], ms[1], ms[2]
	if _, err := s.chat([]*member{victim, leaver}, "before"); err != nil {
		return err
	}
	before := s.publishedCount()

	if err := s.commit(admin, func(g *marmot.Group) (*marmot.Outgoing, error) { return g.Remove(victim.pub()) }); err != nil {
		return err
	}
	r.expect("the removed member learns of its removal", s.waitRemoved(victim), StatusFail, "%s processed the Commit removing it", victim.name)

	// SelfRemove: the leaver proposes, an admin commits.
	if err := selfRemove(s, admin, leaver); err != nil {
		return err
	}
	r.expect("the SelfRemove is committed", !slices.Contains(membersOf(admin), leaver.pub()), StatusFail,
		"%s left by SelfRemove", leaver.name)

	after := s.publishedCount()
	rest := slices.DeleteFunc(slices.Clone(ms), func(m *member) bool { return m == victim || m == leaver })
	ids, err := s.chat(talkers(rest), "after")
	if err != nil {
		r.check("the remaining members read everything", StatusFail, "%s", describe(err, nil))
		return nil
	}
	if err := s.commit(rest[1], (*marmot.Group).SelfUpdate); err != nil {
		return err
	}
	more, err := s.chat(rest[:2], "later")
	if err != nil {
		r.check("the remaining members read everything", StatusFail, "%s", describe(err, nil))
		return nil
	}
	r.check("the remaining members read everything", StatusPass, "%d messages and a commit after the removals", len(ids)+len(more))

	// What the removed members could read: every event sent after their
	// removal, tried with every key they held.
	sinceVictim := s.publishedSince(before)
	sinceLeaver := s.publishedSince(after)
	for _, c := range []struct {
		m   *member
		evs int
		got int
	}{
		{victim, len(sinceVictim) - 1, opened(victim, sinceVictim[1:])}, // [0] is its removal, which it may read
		{leaver, len(sinceLeaver), opened(leaver, sinceLeaver)},
	} {
		r.expect(fmt.Sprintf("%s cannot decrypt after leaving", c.m.name), c.got == 0, StatusFail,
			"%d of the %d events sent after it left open with one of the %d keys it held", c.got, c.evs, c.m.keysHeld())
	}
	for _, m := range []*member{victim, leaver} {
		got := 0
		for _, id := range append(ids, more...) {
			if m.has(id) {
				got++
			}
		}
		r.expect(fmt.Sprintf("%s received none of the later messages", m.name), got == 0, StatusFail, "%d delivered", got)
	}
	r.metric("removed_member_keys", float64(victim.keysHeld()))
	return nil
}

// opened counts the events any of m's keys opens.
func opened(m *member, evs []*nostr.Event) int {
	m.mu.Lock()
	keys := slices.Clone(m.keys)
	m.mu.Unlock()
	n := 0
	for _, ev := range evs {
		for _, k := range keys {
			if _, err := marmot.OpenGroupContent(k, ev.Content); err == nil {
				n++
				break
			}
		}
	}
	return n
}

// waitRemoved waits until m has processed its own removal.
func (s *sim) waitRemoved(m *member) bool {
	deadline := time.Now().Add(2 * s.cfg.Timeout)
	for time.Now().Before(deadline) {
		if m.isRemoved() {
			return true
		}
		if sleep(s.ctx, 5*time.Millisecond) != nil {
			return false
		}
	}
	return false
}

func (m *member) keysHeld() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.keys)
}

func (m *member) proposalsSeen() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.proposals
}

func membersOf(m *member) []marmot.Pubkey {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.g.Members()
}
