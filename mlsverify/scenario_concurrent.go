package mlsverify

import (
	"bytes"
	"fmt"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/marmot"
)

// growBatch is the invite batch of scenarios that only need a group to
// work on.
const growBatch = 10

// concurrentCommits: k members commit on the same epoch at once. With
// commit slots exactly one is granted, the others are told the holder at
// once, and everyone converges without a rewind; then a misbehaving member
// takes the slot with a Commit nobody can process, and an honest member
// releases it. Without slots the relay accepts every Commit (a fork) and
// the convergence rule must bring every member to one state; the rewinds
// and the time it took are reported.
func concurrentCommits(s *sim) error {
	r := s.res
	n := s.cfg.Members
	ms, err := s.grow(n, growBatch)
	if err != nil {
		return err
	}
	k := min(5, n-1)
	racers := ms[1 : 1+k]
	rewinds0 := s.rewinds()
	outs := make([]*marmot.Outgoing, k)
	keys := make([][]byte, k)
	for i, m := range racers {
		if outs[i], keys[i], err = s.prepare(m, (*marmot.Group).SelfUpdate); err != nil {
			return err
		}
	}
	s.progress(true, "%d members commit on epoch %d at once", k, epochOf(ms[0]))
	results := make([]commitOutcome, k)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, m := range racers {
		wg.Go(func() {
			<-start
			results[i] = s.publishCommit(m, outs[i], keys[i])
		})
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	var winners []int
	var slowest time.Duration
	for i, res := range results {
		switch {
		case res.err == nil:
			winners = append(winners, i)
			s.stats.commits.Add(1)
		case res.holder == "":
			return fmt.Errorf("%s: commit refused: %w", racers[i].name, res.err)
		default:
			slowest = max(slowest, res.answered)
		}
	}
	r.metric("racing_commits", float64(k))
	r.metric("commits_accepted", float64(len(winners)))
	if s.slots {
		r.expect("exactly one Commit granted", len(winners) == 1, StatusFail, "%d of %d claims on one slot got OK true", len(winners), k)
		told := len(winners) == 1
		for _, res := range results {
			if res.err != nil && (len(winners) != 1 || res.holder != outs[winners[0]].Event.ID) {
				told = false
			}
		}
		r.expect("the others told the holder at once", told, StatusFail, "%d losers answered blocked: slot taken by the granted Commit, the slowest in %v", k-len(winners), slowest.Round(time.Millisecond))
		r.metric("loser_answer_max_ms", millis(slowest))
	} else {
		r.check("one Commit per epoch", StatusWarn, "no commit slots advertised: the relay accepted %d of %d Commits built on one epoch, a fork only the members' convergence rule repairs", len(winners), k)
	}
	err = s.agree()
	converge := time.Since(t0)
	s.stats.commitNanos.Add(int64(converge))
	if err != nil {
		r.check("every member converged", StatusFail, "%s", describe(err, nil))
		return nil
	}
	rewinds := s.rewinds() - rewinds0
	r.metric("converge_ms", millis(converge))
	r.metric("rewinds", float64(rewinds))
	r.check("every member converged", StatusPass, "%d members on one state in %v", len(s.active()), converge.Round(time.Millisecond))
	if s.slots {
		r.expect("no rewind", rewinds == 0, StatusFail, "%d branch switches", rewinds)
	} else {
		r.note("without slots the convergence rule chose among %d branches: %d rewinds (members leaving a branch they had applied), converged in %v", len(winners), rewinds, converge.Round(time.Millisecond))
	}
	if err := s.commit(ms[0], (*marmot.Group).SelfUpdate); err != nil {
		r.check("the group goes on after the race", StatusFail, "%s", describe(err, nil))
		return nil
	}
	r.check("the group goes on after the race", StatusPass, "the next commit reached every member")
	return misbehave(s, ms[0], ms[n-1])
}

// misbehave has bad take the epoch's slot (or publish, without slots) a
// Commit nobody can process; honest must go on: with slots by releasing
// the slot with its own Commit, without by committing on the same epoch.
func misbehave(s *sim, honest, bad *member) error {
	r := s.res
	o, key, err := s.prepare(bad, (*marmot.Group).SelfUpdate)
	if err != nil {
		return err
	}
	bad.mu.Lock()
	corrupt, err := corruptCommit(bad.g, o.Event)
	bad.g.DiscardPending()
	bad.mu.Unlock()
	if err != nil {
		return err
	}
	s.corrupt = map[string]bool{corrupt.ID: true}
	if _, err := bad.conn.publishCommit(s.ctx, corrupt, key); err != nil {
		return fmt.Errorf("%s: publish the corrupt Commit: %w", bad.name, err)
	}
	s.record(corrupt)
	// Everyone tries it and fails.
	if err := s.await("try the corrupt Commit", func(m *member) bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		_, tried := m.unprocessable[corrupt.ID]
		return tried || m == bad
	}); err != nil {
		r.check("members refuse the unprocessable Commit", StatusFail, "%s", describe(err, nil))
		return nil
	}
	r.check("members refuse the unprocessable Commit", StatusPass, "every member failed to process it and kept its state")

	o2, key2, err := s.prepare(honest, (*marmot.Group).SelfUpdate)
	if err != nil {
		return err
	}
	res := s.publishCommit(honest, o2, key2)
	switch {
	case s.slots && res.holder == corrupt.ID:
		// The corrupt Commit holds the slot: release it with a new Commit
		// on the same epoch.
		o3, key3, err := s.prepare(honest, (*marmot.Group).SelfUpdate)
		if err != nil {
			return err
		}
		rel := s.publishVia(honest, o3, func() (marmot.OK, error) {
			return honest.conn.publishRelease(s.ctx, o3.Event, key3, corrupt.ID)
		})
		if rel.err != nil {
			r.check("the unprocessable holder released", StatusFail, "%s", describe(rel.err, nil))
			return nil
		}
		r.expect("the unprocessable holder released", rel.ok.Released == corrupt.ID, StatusFail, "OK true %q", rel.ok.Message)
	case s.slots:
		r.check("the unprocessable holder released", StatusFail, "the corrupt Commit was granted, but the next claim got %v", res.err)
		return nil
	case res.err != nil:
		return fmt.Errorf("%s: commit after the corrupt one: %w", honest.name, res.err)
	default:
		r.check("the unprocessable holder released", StatusSkip, "no commit slots: the corrupt Commit holds nothing, the next Commit was accepted beside it")
	}
	s.stats.commits.Add(1)
	if err := s.converge(honest); err != nil {
		r.check("the group goes on after the unprocessable Commit", StatusFail, "%s", describe(err, nil))
		return nil
	}
	r.check("the group goes on after the unprocessable Commit", StatusPass, "every member on %s's Commit", honest.name)
	return nil
}

// corruptCommit re-wraps a commit's MLS message with its last byte (the
// membership tag) flipped: a valid kind 445, sealed with the epoch's key,
// that no member can process.
func corruptCommit(g *marmot.Group, ev *nostr.Event) (*nostr.Event, error) {
	key, err := marmot.GroupEventKey(g.MLS())
	if err != nil {
		return nil, err
	}
	msg, err := marmot.OpenGroupContent(key, ev.Content)
	if err != nil {
		return nil, err
	}
	msg[len(msg)-1] ^= 0x01
	return marmot.NewGroupEvent(key, g.NostrGroupID(), msg, marmot.GroupEventOptions{})
}

// rewinds is the members' branch switches so far.
func (s *sim) rewinds() int {
	n := 0
	for _, m := range s.members {
		n += m.rewinds()
	}
	return n
}

// agree waits until every active member is on one state.
func (s *sim) agree() error {
	return s.awaitEach("agree on one state", func() func(*member) bool {
		var re uint64
		var ra []byte
		if act := s.active(); len(act) > 0 {
			re, ra, _ = act[0].state()
		}
		return func(m *member) bool {
			e, a, ok := m.state()
			return !ok || (e == re && bytes.Equal(a, ra))
		}
	})
}
