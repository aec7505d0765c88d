package mlsverify

import (
	"runtime"
	"strings"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/marmot"
)

// largeGroup: grow a group to N members in batches and report what size
// costs: Welcome and Commit sizes, per-commit and per-join processing
// time, memory per simulated member, and the group size from which a
// gift-wrapped Welcome no longer fits NIP-44's 65,535-byte plaintext limit.
// The Welcome carries the whole ratchet tree, so its size grows with the
// group, not only the batch: past the limit no Welcome can travel by gift
// wrap, whatever the batch, and
// the harness hands the rest to their joiners out of band, outside the
// protocol and labelled so, to keep measuring.
func largeGroup(s *sim) error {
	r := s.res
	n := s.cfg.Members
	batch := largeBatch(n)
	// The KeyPackage lifecycle is keypackage-lifecycle's; here joiners keep
	// their used KeyPackage rather than publish a replacement each.
	s.skipReplace = true
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ms, err := s.addMembers(n)
	if err != nil {
		return err
	}
	admin := ms[0]
	if err := s.create(admin); err != nil {
		return err
	}
	var maxAdd, sizeAt int
	type point struct{ members, rumor int }
	var first, last point
	// Small batches until a Welcome no longer fits a gift wrap, so that the
	// group size where that happens is found to within a few members (a
	// Welcome holds the tree and one secret per invitee); the large batch
	// after.
	for i, step := 1, 0; i < n; i += step {
		s.wsizes.mu.Lock()
		wrapping := s.wsizes.firstTooBig == 0
		s.wsizes.mu.Unlock()
		step = batch
		if wrapping {
			step = min(batch, smallBatch)
		}
		group := ms[i:min(i+step, n)]
		var kps []*nostr.Event
		for _, m := range group {
			kp, err := s.discover(admin, m)
			if err != nil {
				return err
			}
			kps = append(kps, kp)
		}
		var add *nostr.Event
		if err := s.commit(admin, func(g *marmot.Group) (*marmot.Outgoing, error) {
			o, err := g.Invite(kps...)
			if err == nil {
				add = o.Event
				if len(o.Welcomes) > 0 {
					p := point{len(g.Members()) + len(kps), len(o.Welcomes[0].Rumor.String())}
					if first.members == 0 {
						first = p
					}
					last = p
				}
			}
			return o, err
		}); err != nil {
			return err
		}
		if add != nil && len(add.Content) > maxAdd {
			maxAdd, sizeAt = len(add.Content), len(s.active())
		}
		s.wsizes.mu.Lock()
		oob := s.wsizes.oob
		s.wsizes.mu.Unlock()
		s.progress(false, "members %d/%d, epoch %d, largest Commit %d B, Welcome rumor %d B, %d Welcomes out of band",
			len(s.active()), n, epochOf(admin), maxAdd, last.rumor, oob)
	}
	size := len(s.active())
	r.expect("the group grew to N", size == n, StatusFail, "%d of %d members, in batches of %d (of %d while Welcomes fitted a gift wrap)", size, n, batch, min(batch, smallBatch))
	s.reportWelcomes()
	if last.members > first.members && first.members > 0 {
		per := float64(last.rumor-first.rumor) / float64(last.members-first.members)
		r.metric("welcome_bytes_per_member", round1(per))
		if fit := maxWrappableRumor(admin); fit > 0 && per > 0 {
			r.metric("giftwrap_fit_rumor_bytes", float64(fit))
			r.metric("giftwrap_limit_members_estimate", float64(last.members)+float64(int(float64(fit-last.rumor)/per)))
			r.note("a Welcome rumor fits a gift wrap up to %d bytes; at %.0f bytes per member that is about %d members (extrapolated from %d and %d members)",
				fit, per, last.members+int(float64(fit-last.rumor)/per), first.members, last.members)
		}
	}
	r.metric("batch", float64(batch))
	r.metric("commit_add_max_bytes", float64(maxAdd))
	r.metric("commit_add_max_at_members", float64(sizeAt))

	// A Commit at full size: an update of one member's path.
	processed0, nanos0 := s.stats.processed.Load(), s.stats.processNanos.Load()
	var upd *nostr.Event
	if err := s.commit(ms[n-1], func(g *marmot.Group) (*marmot.Outgoing, error) {
		o, err := g.SelfUpdate()
		if err == nil {
			upd = o.Event
		}
		return o, err
	}); err != nil {
		return err
	}
	if upd != nil {
		r.metric("commit_update_bytes", float64(len(upd.Content)))
	}
	if p := s.stats.processed.Load() - processed0; p > 0 {
		r.metric("commit_update_process_ms", millis(time.Duration((s.stats.processNanos.Load()-nanos0)/p)))
	}
	if p := s.stats.processed.Load(); p > 0 {
		r.metric("commit_process_mean_ms", millis(time.Duration(s.stats.processNanos.Load()/p)))
	}
	if j := s.stats.joins.Load(); j > 0 {
		r.metric("join_mean_ms", millis(time.Duration(s.stats.joinNanos.Load()/j)))
	}
	ids, err := s.chat([]*member{admin}, "to everyone")
	if err != nil {
		return err
	}
	r.expect("a message reaches every member", len(ids) == 1, StatusFail, "%d members decrypted it", size-1)
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if after.HeapAlloc > before.HeapAlloc {
		r.metric("heap_per_member_kb", round1(float64(after.HeapAlloc-before.HeapAlloc)/float64(n)/1024))
		r.note("heap per member is this process's growth over the scenario divided by N: each member's MLS state, retained epochs and queues (and an in-process relay's share, when the harness runs one)")
	}
	return nil
}

// largeBatch is the invite batch of large-group once Welcomes no longer
// fit a gift wrap: about twenty commits for the whole group, at least 5 and
// at most 50 invitees each; smallBatch the one before.
func largeBatch(n int) int { return max(5, min(50, (n+19)/20)) }

const smallBatch = 5

// maxWrappableRumor finds the largest kind 444 rumor (its JSON size) that
// marmot.WrapWelcome still fits in a gift wrap, by bisection over rumors
// with padded content.
func maxWrappableRumor(by *member) int {
	lo, hi := 1000, 70000
	fits := func(n int) bool {
		rumor := nostr.Event{PubKey: by.pub().Hex(), Kind: marmot.KindWelcome, CreatedAt: nostr.Now(), Tags: nostr.Tags{}}
		if pad := n - len(rumor.String()); pad > 0 {
			rumor.Content = strings.Repeat("A", pad)
		}
		rumor.ID = rumor.GetID()
		_, err := marmot.WrapWelcome(by.acct, rumor, by.pub(), marmot.WrapOptions{})
		return err == nil
	}
	if !fits(lo) {
		return 0
	}
	for hi-lo > 16 {
		mid := (lo + hi) / 2
		if fits(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}
