package mlsverify

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/marmot"
)

// keyPackageLifecycle: a KeyPackage is published (as a 30443 and its
// legacy 443 twin), fetched, consumed by an invite, replaced in its slot;
// then the used one must be gone from the relay by id and by author, its
// twin with it, and its re-publication refused.
func keyPackageLifecycle(s *sim) error {
	r := s.res
	ms, err := s.addMembers(2)
	if err != nil {
		return err
	}
	admin, inv := ms[0], ms[1]
	used := inv.kp
	twin, err := inv.bundle.LegacyEvent(inv.acct, time.Now())
	if err != nil {
		return err
	}
	// Clients in the 443 → 30443 transition publish both; a relay may
	// refuse the legacy kind, and then there is no twin to check.
	twinTaken := true
	if _, err := inv.conn.publish(s.ctx, twin); err != nil {
		if !rejected(err) {
			return err
		}
		twinTaken = false
		r.check("legacy 443 twin accepted", StatusWarn, "%s: the twin checks do not apply", describe(err, nil))
	}

	served, err := s.ids(admin, used.ID, twin.ID)
	if err != nil {
		return err
	}
	r.expect("KeyPackage and its 443 twin served", served[used.ID] && (served[twin.ID] || !twinTaken), StatusFail,
		"by id: 30443 %s, 443 twin %s", present(served[used.ID]), present(served[twin.ID]))

	found, err := s.discover(admin, inv)
	if err != nil {
		return err
	}
	r.expect("inviter finds the KeyPackage by author", found.ID == used.ID, StatusFail, "KeyPackages(author) returned %.16s, published %.16s", found.ID, used.ID)
	if err := s.create(admin); err != nil {
		return err
	}
	if err := s.commit(admin, func(g *marmot.Group) (*marmot.Outgoing, error) { return g.Invite(found) }); err != nil {
		return err
	}
	repl := inv.kp
	r.expect("invitee joined and replaced the KeyPackage in its slot", repl.ID != used.ID && repl.Tags.GetD() == used.Tags.GetD(), StatusFail,
		"replacement %.16s in slot %.16s", repl.ID, repl.Tags.GetD())

	served, err = s.ids(admin, used.ID, twin.ID, repl.ID)
	if err != nil {
		return err
	}
	r.expect("replacement served", served[repl.ID], StatusFail, "by id: %s", present(served[repl.ID]))
	r.expect("used KeyPackage gone by id", !served[used.ID], StatusFail, "the used 30443 is %s", present(served[used.ID]))
	byAuthor, err := s.byAuthor(admin, inv, marmot.KindKeyPackage, marmot.KindLegacyKeyPackage)
	if err != nil {
		return err
	}
	r.expect("used KeyPackage gone by author", !byAuthor[used.ID] && byAuthor[repl.ID], StatusFail,
		"by author: used %s, replacement %s", present(byAuthor[used.ID]), present(byAuthor[repl.ID]))
	if twinTaken {
		r.expect("443 twin of the used KeyPackage gone", !served[twin.ID] && !byAuthor[twin.ID], StatusFail,
			"the 443 twin is %s by id and %s by author", present(served[twin.ID]), present(byAuthor[twin.ID]))
	}

	republish := []struct {
		name string
		ev   *nostr.Event
	}{{"re-publication of the used KeyPackage refused", used}}
	if twinTaken {
		republish = append(republish, struct {
			name string
			ev   *nostr.Event
		}{"re-publication of its 443 twin refused", twin})
	}
	var accepted []string
	for _, c := range republish {
		ok, err := admin.conn.publish(s.ctx, c.ev)
		var e *marmot.Error
		switch {
		case errors.As(err, &e) && errors.Is(e.Check, marmot.ErrRejected):
			r.check(c.name, StatusPass, "OK false: %s", e.Reason)
		case err != nil:
			return err
		default:
			accepted = append(accepted, c.name)
			r.check(c.name, StatusFail, "OK true %q: the relay does not remember that it was deleted", ok.Message)
		}
	}
	served, err = s.ids(admin, used.ID, twin.ID)
	if err != nil {
		return err
	}
	if len(accepted) > 0 {
		r.note("after the accepted re-publications the used 30443 is %s and the 443 twin %s", present(served[used.ID]), present(served[twin.ID]))
	}
	r.expect("still gone after re-publication", !served[used.ID] && !served[twin.ID], StatusFail,
		"used 30443 %s, 443 twin %s", present(served[used.ID]), present(served[twin.ID]))
	return nil
}

// ids fetches events by id and reports which the relay serves.
func (s *sim) ids(by *member, ids ...string) (map[string]bool, error) {
	got, err := by.conn.fetch(s.ctx, nostr.Filter{IDs: ids})
	if err != nil {
		return nil, fmt.Errorf("fetch by id: %w", err)
	}
	out := map[string]bool{}
	for _, d := range got {
		if slices.Contains(ids, d.Event.ID) && d.Event.CheckID() {
			out[d.Event.ID] = true
		}
	}
	return out, nil
}

// byAuthor fetches who's events of the given kinds.
func (s *sim) byAuthor(by, who *member, kinds ...int) (map[string]bool, error) {
	got, err := by.conn.fetch(s.ctx, nostr.Filter{Kinds: kinds, Authors: []string{who.pub().Hex()}})
	if err != nil {
		return nil, fmt.Errorf("fetch by author: %w", err)
	}
	out := map[string]bool{}
	for _, d := range got {
		out[d.Event.ID] = true
	}
	return out, nil
}

// rejected reports an OK false (or CLOSED) answer, as opposed to a
// connection failure.
func rejected(err error) bool {
	var e *marmot.Error
	return errors.As(err, &e) && errors.Is(e.Check, marmot.ErrRejected)
}

func present(ok bool) string {
	if ok {
		return "served"
	}
	return "absent"
}
