package mlsverify

import (
	"fmt"
	"sync"
	"time"

	"github.com/burrow-relay/burrow/marmot"
)

// relayFaults: connections drop in the middle of traffic, the relay
// restarts (when the harness started it), and events arrive twice; after
// each, every member must be on one state with every message.
func relayFaults(s *sim) error {
	r := s.res
	n := s.cfg.Members
	ms, err := s.grow(n, growBatch)
	if err != nil {
		return err
	}
	admin := ms[0]

	// Disconnects: half the connections drop while members chat and an
	// admin commits; they reconnect and resume from their cursor.
	reconnects0 := s.stats.reconnects.Load()
	err = s.during(func() {
		for i, cn := range s.conns {
			if i%2 == 0 {
				cn.drop()
			}
		}
	}, talkers(ms), "through disconnects")
	if err == nil {
		err = s.commit(admin, (*marmot.Group).SelfUpdate)
	}
	r.expect("converged through disconnects", err == nil, StatusFail, "%s", detailOr(err,
		fmt.Sprintf("%d connections dropped mid-chat and reconnected; every message and the next commit reached every member", (len(s.conns)+1)/2)))
	if err != nil {
		return nil
	}
	r.metric("fault_reconnects", float64(s.stats.reconnects.Load()-reconnects0))

	s.progress(true, "through disconnects: converged")
	// Restart.
	if s.cfg.Restart == nil {
		r.check("converged through a relay restart", StatusSkip, "the harness did not start the relay, so it cannot restart it")
	} else {
		var rerr error
		err = s.during(func() {
			t0 := time.Now()
			rerr = s.cfg.Restart(s.ctx)
			s.progress(true, "relay restarted in %v", time.Since(t0).Round(time.Millisecond))
		}, talkers(ms), "through a restart")
		if rerr != nil {
			return fmt.Errorf("restart the relay: %w", rerr)
		}
		if err == nil {
			err = s.commit(ms[1], (*marmot.Group).SelfUpdate)
		}
		r.expect("converged through a relay restart", err == nil, StatusFail, "%s", detailOr(err,
			fmt.Sprintf("the relay restarted mid-chat; members reconnected and resent what was unanswered (%d retries so far), and every message and the next commit reached every member", s.stats.retries.Load())))
		if err != nil {
			return nil
		}
	}

	s.progress(true, "through a restart: converged")
	// Duplicates: the last events published again (the relay must answer
	// them as stored, not store them twice), and every event handed to every
	// member twice.
	published := s.publishedSince(max(0, s.publishedCount()-10))
	accepted := 0
	for _, ev := range published {
		if _, err := admin.conn.publish(s.ctx, ev); err == nil {
			accepted++
		} else if !rejected(err) {
			return err
		}
	}
	for _, m := range s.active() {
		for _, ev := range published {
			m.push(delivery{ev: ev, at: time.Now()})
			m.push(delivery{ev: ev, at: time.Now()})
		}
	}
	ids, err := s.chat(talkers(ms), "after duplicates")
	if err == nil {
		err = s.commit(admin, (*marmot.Group).SelfUpdate)
	}
	r.expect("converged through duplicate deliveries", err == nil, StatusFail, "%s", detailOr(err,
		fmt.Sprintf("%d events re-sent to the relay (%d answered OK) and delivered twice more to every member; %d new messages and a commit reached every member once", len(published), accepted, len(ids))))
	return nil
}

// during runs fault while every member of ms sends a message (half before
// the fault, half after), then waits until everyone has every message.
func (s *sim) during(fault func(), ms []*member, round string) error {
	half := len(ms) / 2
	var ids [][32]byte
	var mu sync.Mutex
	sendAll := func(group []*member) error {
		return s.parallel(group, 8, func(m *member) error {
			id, err := s.send(m, round+" from "+m.name)
			mu.Lock()
			ids = append(ids, id)
			mu.Unlock()
			return err
		})
	}
	if err := sendAll(ms[:half]); err != nil {
		return err
	}
	// The fault strikes while the second half is sending: what was in
	// flight is resent once the connection is back.
	var wg sync.WaitGroup
	wg.Go(fault)
	err := sendAll(ms[half:])
	wg.Wait()
	if err != nil {
		return err
	}
	return s.awaitMessages(ids)
}

func detailOr(err error, ok string) string {
	if err != nil {
		return describe(err, nil)
	}
	return ok
}
