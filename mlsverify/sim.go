package mlsverify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/marmot"
)

// sim is one scenario's world: the relay connections, the members, and
// what was measured.
type sim struct {
	ctx  context.Context
	cfg  Config
	name string
	res  *Result
	info marmot.RelayInfo
	// seq and slots say whether the relay advertises since_seq and commit
	// slots (the first relay's NIP-11 decides for all).
	seq, slots bool

	conns   []*conn
	members []*member
	byKey   map[marmot.Pubkey]*member
	// private bounds the members' own (authenticated) connections open
	// at once.
	private semaphore
	// cpu lets as many members process events (or join) at once as there
	// are cores: all the simulated members share this machine, and a
	// member's processing time should be its own, not a wait for a core.
	cpu semaphore
	// skipReplace leaves used KeyPackages in place after joins (large
	// groups, where the lifecycle is not what is measured).
	skipReplace bool
	h           [32]byte
	following   bool
	// corrupt are events the scenario made unprocessable on purpose, by
	// id: members failing on them is the point.
	corrupt map[string]bool
	wsizes  welcomeSizes

	stats simStats

	mu        sync.Mutex
	sentEv    map[string]sentEvent   // app event id -> when and by whom
	sentMsg   map[[32]byte]time.Time // app message id -> publish time
	senders   map[[32]byte]*member
	lat, dec  []time.Duration
	published []*nostr.Event
	faults    []string
	lastPrint time.Time
}

// simStats are counters the connections and members add to.
type simStats struct {
	reconnects, retries, rateLimited atomic.Int64
	duplicates, rereads, released    atomic.Int64
	repairs, repairEvents            atomic.Int64
	// repairMissed counts events a repair read found that had never
	// arrived on the member's connection: live delivery lost them.
	repairMissed atomic.Int64
	commits      atomic.Int64
	commitNanos  atomic.Int64
	// processed and processNanos time other members' commits; joins and
	// joinNanos the joins from a Welcome.
	processed, processNanos atomic.Int64
	joins, joinNanos        atomic.Int64
}

func newSim(ctx context.Context, cfg Config, name string, res *Result, info marmot.RelayInfo) *sim {
	s := &sim{ctx: ctx, cfg: cfg, name: name, res: res, info: info,
		seq: info.Supports(marmot.ExtSinceSeq), slots: info.Supports(marmot.ExtCommitSlots),
		byKey:   map[marmot.Pubkey]*member{},
		private: make(semaphore, 4),
		cpu:     make(semaphore, runtime.GOMAXPROCS(0)),
		sentEv:  map[string]sentEvent{}, sentMsg: map[[32]byte]time.Time{}, senders: map[[32]byte]*member{}}
	for _, url := range cfg.Relays {
		for range cfg.Conns {
			s.conns = append(s.conns, newConn(s, url))
		}
	}
	return s
}

// close ends every connection and follower.
func (s *sim) close() {
	for _, cn := range s.conns {
		cn.close()
	}
	if s.following {
		for _, cn := range s.conns {
			<-cn.done
		}
	}
}

// progress prints a line about the scenario's state, at most twice a
// second unless force is set.
func (s *sim) progress(force bool, format string, args ...any) {
	if s.cfg.Progress == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !force && time.Since(s.lastPrint) < 500*time.Millisecond {
		return
	}
	s.lastPrint = time.Now()
	fmt.Fprintf(s.cfg.Progress, "[%s] %s\n", s.name, fmt.Sprintf(format, args...))
}

// fault records a relay problem met and worked around.
func (s *sim) fault(err error, c *marmot.Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.faults) < 20 {
		s.faults = append(s.faults, describe(err, c))
	}
}

// addMembers makes n members (indexes from len(s.members)), spread over
// the relays and their connections, and publishes each one's relay lists
// (kind 10002 and 10050) and KeyPackage.
func (s *sim) addMembers(n int) ([]*member, error) {
	var out []*member
	relays := len(s.cfg.Relays)
	for range n {
		i := len(s.members)
		// Member i uses relay i mod R, and its connections in turn.
		r := i % relays
		cn := s.conns[r*s.cfg.Conns+(i/relays)%s.cfg.Conns]
		m, err := s.newMember(i, cn)
		if err != nil {
			return nil, err
		}
		s.members = append(s.members, m)
		s.byKey[m.pub()] = m
		out = append(out, m)
	}
	err := s.parallel(out, 4, func(m *member) error {
		for _, ev := range []*nostr.Event{
			{Kind: 10002, CreatedAt: nostr.Now(), Tags: nostr.Tags{{"r", m.conn.url}}},
			{Kind: 10050, CreatedAt: nostr.Now(), Tags: nostr.Tags{{"relay", m.conn.url}}},
			m.kp,
		} {
			if ev.Sig == "" {
				if err := m.acct.SignEvent(ev); err != nil {
					return err
				}
			}
			if _, err := m.conn.publish(s.ctx, ev); err != nil {
				return fmt.Errorf("%s: publish kind %d: %w", m.name, ev.Kind, err)
			}
		}
		return nil
	})
	return out, err
}

// parallel runs f for every member with at most n at once, returning the
// error of the first member that failed.
func (s *sim) parallel(ms []*member, n int, f func(*member) error) error {
	var wg sync.WaitGroup
	sem := make(semaphore, n)
	errs := make([]error, len(ms))
	for i, m := range ms {
		release, err := sem.acquire(s.ctx)
		if err != nil {
			errs[i] = err
			break
		}
		wg.Go(func() {
			defer release()
			errs[i] = f(m)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// create makes m the founder of a new group on the configured relays and
// starts following it on every connection.
func (s *sim) create(m *member) error {
	g, err := marmot.CreateGroup(m.acct, marmot.NewGroupParams{Name: "harness " + s.name, Relays: s.cfg.Relays}, m.opts())
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.g = g
	m.noteKey()
	m.mu.Unlock()
	m.conn.attach(m)
	s.h = g.NostrGroupID()
	s.following = true
	for _, cn := range s.conns {
		go cn.follow(s.h)
	}
	return nil
}

// discover finds an invitee's KeyPackage the way an inviter does: the
// usable KeyPackages the invitee's account published, best first.
func (s *sim) discover(by, who *member) (*nostr.Event, error) {
	var kps []*nostr.Event
	err := by.conn.do(s.ctx, func(c *marmot.Client) (err error) {
		kps, err = c.KeyPackages(s.ctx, who.pub(), time.Now())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("KeyPackages of %s: %w", who.name, err)
	}
	if len(kps) == 0 {
		return nil, fmt.Errorf("the relay serves no usable KeyPackage of %s", who.name)
	}
	return kps[0], nil
}

// commitOutcome is what happened to one commit.
type commitOutcome struct {
	ok marmot.OK
	// holder is the Commit that holds the slot, when the claim lost.
	holder string
	err    error
	// answered is how long the relay took to answer the claim or event.
	answered time.Duration
}

// prepare has m build a commit; slotKey is the slot of the epoch it is
// built on when the relay offers commit slots.
func (s *sim) prepare(m *member, build func(*marmot.Group) (*marmot.Outgoing, error)) (o *marmot.Outgoing, slotKey []byte, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if o, err = build(m.g); err != nil {
		return nil, nil, err
	}
	if s.slots && o.Event != nil {
		if slotKey, err = m.g.CommitSlotKey(); err != nil {
			m.g.DiscardPending()
			return nil, nil, err
		}
	}
	return o, slotKey, nil
}

// publishCommit publishes a prepared commit (a claim where the relay has
// commit slots), applies it on OK true and drops it otherwise.
func (s *sim) publishCommit(m *member, o *marmot.Outgoing, slotKey []byte) commitOutcome {
	return s.publishVia(m, o, func() (marmot.OK, error) { return m.conn.publishCommit(s.ctx, o.Event, slotKey) })
}

// publishVia publishes a prepared commit with pub, applies it on OK true
// and drops it otherwise.
func (s *sim) publishVia(m *member, o *marmot.Outgoing, pub func() (marmot.OK, error)) commitOutcome {
	var res commitOutcome
	start := time.Now()
	if o.Event != nil {
		res.ok, res.err = pub()
		res.answered = time.Since(start)
		if res.err == nil {
			s.record(o.Event)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if res.err != nil {
		m.g.DiscardPending()
		res.holder, _ = marmot.SlotTaken(res.err)
		return res
	}
	if _, err := m.g.ConfirmPublished(); err != nil {
		res.err = fmt.Errorf("%s: apply its own commit: %w", m.name, err)
		return res
	}
	m.noteKey()
	return res
}

// commit prepares, publishes and applies a commit by m, sends its
// Welcomes, and waits until every current member is on the new state.
func (s *sim) commit(m *member, build func(*marmot.Group) (*marmot.Outgoing, error)) error {
	start := time.Now()
	o, key, err := s.prepare(m, build)
	if err != nil {
		return fmt.Errorf("%s: commit: %w", m.name, err)
	}
	for _, w := range o.Welcomes {
		if inv := s.byKey[w.Invitee]; inv != nil {
			inv.conn.attach(inv)
		}
	}
	res := s.publishCommit(m, o, key)
	if res.err != nil {
		return fmt.Errorf("%s: publish commit: %w", m.name, res.err)
	}
	if err := s.welcome(m, o.Welcomes); err != nil {
		return err
	}
	if err := s.converge(m); err != nil {
		return err
	}
	s.stats.commits.Add(1)
	s.stats.commitNanos.Add(int64(time.Since(start)))
	return nil
}

// welcomeFor is how an invitee gets its Welcome: by gift wrap (oob nil)
// or handed over outside the protocol.
type welcomeFor struct {
	oob *nostr.Event
}

// sizes measured on Welcomes.
type welcomeSizes struct {
	mu                      sync.Mutex
	maxRumor, maxWrap       int
	wrapped, oob, refused   int
	firstTooBig, lastFitted int // group sizes
	tooBigReason            string
	refusedReason           string
}

// welcome gift-wraps each Welcome and publishes it to the invitee's inbox
// relay (read from its kind 10050), then has the invitees join. A Welcome
// too large for NIP-44, or refused by the relay, is handed to its invitee
// out of band and counted as such: outside the protocol.
func (s *sim) welcome(by *member, ws []marmot.Welcome) error {
	if len(ws) == 0 {
		return nil
	}
	size := s.groupSize(by)
	invitees := make([]*member, 0, len(ws))
	how := map[*member]welcomeFor{}
	for _, w := range ws {
		inv := s.byKey[w.Invitee]
		if inv == nil {
			return fmt.Errorf("Welcome for an account the harness does not know")
		}
		invitees = append(invitees, inv)
		rumorSize := len(w.Rumor.String())
		s.wsizes.mu.Lock()
		s.wsizes.maxRumor = max(s.wsizes.maxRumor, rumorSize)
		s.wsizes.mu.Unlock()
		gw, err := marmot.WrapWelcome(by.acct, w.Rumor, w.Invitee, marmot.WrapOptions{})
		if errors.Is(err, marmot.ErrWelcome) {
			s.wsizes.mu.Lock()
			s.wsizes.oob++
			if s.wsizes.firstTooBig == 0 {
				s.wsizes.firstTooBig, s.wsizes.tooBigReason = size, err.Error()
			}
			s.wsizes.mu.Unlock()
			rumor := w.Rumor
			how[inv] = welcomeFor{oob: &rumor}
			continue
		}
		if err != nil {
			return err
		}
		inbox, err := s.inbox(by, inv)
		if err != nil {
			return err
		}
		if _, err := inbox.publish(s.ctx, gw); err != nil {
			if !rejected(err) {
				return fmt.Errorf("publish the gift wrap for %s: %w", inv.name, err)
			}
			s.wsizes.mu.Lock()
			s.wsizes.refused++
			s.wsizes.oob++
			if s.wsizes.refusedReason == "" {
				s.wsizes.refusedReason = fmt.Sprintf("at %d members, a %d-byte gift wrap: %s", size, len(gw.String()), describe(err, nil))
			}
			s.wsizes.mu.Unlock()
			rumor := w.Rumor
			how[inv] = welcomeFor{oob: &rumor}
			continue
		}
		s.wsizes.mu.Lock()
		s.wsizes.wrapped++
		s.wsizes.maxWrap = max(s.wsizes.maxWrap, len(gw.String()))
		s.wsizes.lastFitted = max(s.wsizes.lastFitted, size)
		s.wsizes.mu.Unlock()
		how[inv] = welcomeFor{}
	}
	return s.parallel(invitees, 4, func(m *member) error { return m.join(s.ctx, how[m]) })
}

// inbox is the connection to the invitee's inbox relay, from its kind
// 10050 as the inviter reads it (the inviter's own connection when it is to
// that relay).
func (s *sim) inbox(by, inv *member) (*conn, error) {
	var relays []string
	err := by.conn.do(s.ctx, func(c *marmot.Client) (err error) {
		relays, err = c.InboxRelays(s.ctx, inv.pub())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("inbox relays of %s: %w", inv.name, err)
	}
	if slices.Contains(relays, by.conn.url) {
		return by.conn, nil
	}
	for _, cn := range s.conns {
		if slices.Contains(relays, cn.url) {
			return cn, nil
		}
	}
	return nil, fmt.Errorf("%s lists no inbox relay the harness uses (kind 10050: %v)", inv.name, relays)
}

func (s *sim) groupSize(m *member) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.g.Members())
}

// active are the members in the group now (joined, not removed).
func (s *sim) active() []*member {
	var out []*member
	for _, m := range s.members {
		if _, _, ok := m.state(); ok {
			out = append(out, m)
		}
	}
	return out
}

// converge waits until every active member is on ref's state (epoch and
// epoch authenticator), reading the group's stored events for any member
// that stalls.
func (s *sim) converge(ref *member) error {
	return s.awaitEach("reach the reference state", func() func(*member) bool {
		re, ra, rok := ref.state()
		return func(m *member) bool {
			e, a, ok := m.state()
			return !ok || (rok && e == re && bytes.Equal(a, ra))
		}
	})
}

// awaitMessages waits until every active member's application got every
// one of ids (its own sent ones aside).
func (s *sim) awaitMessages(ids [][32]byte) error {
	return s.await("receive every message", func(m *member) bool {
		for _, id := range ids {
			if !m.has(id) && s.senderOf(id) != m {
				return false
			}
		}
		return true
	})
}

// stallAfter is how long the harness waits for live delivery before it
// reads the group's stored events for the members still behind.
const stallAfter = 3 * time.Second

// await polls until done holds for every active, online member with an
// empty queue. When nothing has moved for stallAfter (no member finished,
// no queue changed), the members behind with nothing queued get a repair
// read of the stored events: counted, since a relay that delivers live
// events completely never makes one necessary. It gives up when nothing
// has moved for the request timeout times four: large groups take long,
// stuck ones do not.
func (s *sim) await(what string, done func(*member) bool) error {
	return s.awaitEach(what, func() func(*member) bool { return done })
}

// awaitEach is await with a predicate made afresh for each poll (from a
// reference read once per poll, not once per member).
func (s *sim) awaitEach(what string, each func() func(*member) bool) error {
	repaired := map[*member]bool{}
	poll := 5 * time.Millisecond
	if len(s.members) > 100 {
		poll = 25 * time.Millisecond
	}
	moved := time.Now()
	lastBehind, lastQueued := -1, -1
	for {
		done := each()
		var behind []*member
		queued := 0
		for _, m := range s.active() {
			m.mu.Lock()
			off := m.offline
			m.mu.Unlock()
			if off {
				continue
			}
			p := m.pending()
			queued += p
			if p > 0 || !done(m) {
				behind = append(behind, m)
			}
		}
		if len(behind) == 0 {
			return nil
		}
		now := time.Now()
		if len(behind) != lastBehind || queued != lastQueued {
			moved = now
		}
		lastBehind, lastQueued = len(behind), queued
		still := now.Sub(moved)
		if still > 4*s.cfg.Timeout+stallAfter {
			return fmt.Errorf("%d members did not %s in time (first: %s)", len(behind), what, s.describeMember(behind[0]))
		}
		if still > stallAfter {
			for _, m := range behind {
				if m.pending() == 0 && !repaired[m] {
					repaired[m] = true
					if err := s.repair(m); err != nil {
						return err
					}
					moved = now
				}
			}
		}
		if err := sleep(s.ctx, poll); err != nil {
			return fmt.Errorf("members did not %s: %w", what, err)
		}
	}
}

func (s *sim) describeMember(m *member) string {
	e, _, ok := m.state()
	if !ok {
		return m.name + " (not in the group)"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	d := fmt.Sprintf("%s at epoch %d with %d events queued", m.name, e, len(m.queue))
	if m.lastErr != "" {
		d += "; last error: " + m.lastErr
	}
	return d
}

// repair reads the group's stored events for m and queues them: what a
// client does when live delivery left it behind.
func (s *sim) repair(m *member) error {
	s.stats.repairs.Add(1)
	evs, _, err := m.conn.groupEvents(s.ctx, s.h, 0)
	if err != nil {
		return fmt.Errorf("%s: repair read: %w", m.name, err)
	}
	s.stats.repairEvents.Add(int64(len(evs)))
	m.conn.mu.Lock()
	for _, d := range evs {
		if !m.conn.seen[d.Event.ID] {
			s.stats.repairMissed.Add(1)
		}
	}
	m.conn.mu.Unlock()
	for _, d := range evs {
		m.push(delivery{ev: d.Event, seq: d.Seq, at: time.Now()})
	}
	return nil
}

// send has m send a chat message and publishes it; the harness notes when,
// for the delivery latency.
func (s *sim) send(m *member, text string) ([32]byte, error) {
	m.mu.Lock()
	ev, id, err := m.g.Send(marmot.KindChat, nil, text)
	m.mu.Unlock()
	if err != nil {
		return id, fmt.Errorf("%s: send: %w", m.name, err)
	}
	now := time.Now()
	s.mu.Lock()
	s.sentEv[ev.ID], s.sentMsg[id], s.senders[id] = sentEvent{now, m}, now, m
	s.mu.Unlock()
	if _, err := m.conn.publish(s.ctx, ev); err != nil {
		return id, fmt.Errorf("%s: publish a chat message: %w", m.name, err)
	}
	s.record(ev)
	return id, nil
}

// record keeps a published kind 445 event.
func (s *sim) record(ev *nostr.Event) {
	s.mu.Lock()
	s.published = append(s.published, ev)
	s.mu.Unlock()
}

// publishedSince are the kind 445 events published from index i on.
func (s *sim) publishedSince(i int) []*nostr.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.published[i:])
}

func (s *sim) publishedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.published)
}

// maxTalkers bounds how many members send in one chat round of the
// scenarios that only need traffic (invite-and-chat has everyone talk).
const maxTalkers = 8

// talkers picks at most maxTalkers members, evenly spread.
func talkers(ms []*member) []*member {
	if len(ms) <= maxTalkers {
		return ms
	}
	out := make([]*member, maxTalkers)
	for i := range out {
		out[i] = ms[i*len(ms)/maxTalkers]
	}
	return out
}

// chat has every given member send one message and waits until every
// active member got all of them.
func (s *sim) chat(from []*member, round string) ([][32]byte, error) {
	ids := make([][32]byte, len(from))
	err := s.parallel(from, 8, func(m *member) error {
		id, err := s.send(m, fmt.Sprintf("%s from %s", round, m.name))
		ids[slices.Index(from, m)] = id
		return err
	})
	if err != nil {
		return nil, err
	}
	return ids, s.awaitMessages(ids)
}

// sentEvent is when an app message's event was published, and by whom.
type sentEvent struct {
	at time.Time
	by *member
}

func (s *sim) sentAt(eventID string) (sentEvent, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.sentEv[eventID]
	return t, ok
}

func (s *sim) senderOf(id [32]byte) *member {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.senders[id]
}

func (s *sim) sentMessage(id [32]byte) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.sentMsg[id]
	return t, ok
}

func (s *sim) delivery(d time.Duration) {
	s.mu.Lock()
	s.lat = append(s.lat, d)
	s.mu.Unlock()
}

func (s *sim) decrypted(d time.Duration) {
	s.mu.Lock()
	s.dec = append(s.dec, d)
	s.mu.Unlock()
}

// summarize writes the figures every scenario reports.
func (s *sim) summarize() {
	r := s.res
	s.mu.Lock()
	lat, dec, faults := slices.Clone(s.lat), slices.Clone(s.dec), slices.Clone(s.faults)
	s.mu.Unlock()
	if len(lat) > 0 {
		r.metric("delivery_p50_ms", millis(percentile(lat, 50)))
		r.metric("delivery_p99_ms", millis(percentile(lat, 99)))
		r.metric("deliveries", float64(len(lat)))
	}
	if len(dec) > 0 {
		r.metric("decrypted_p50_ms", millis(percentile(dec, 50)))
		r.metric("decrypted_p99_ms", millis(percentile(dec, 99)))
	}
	st := &s.stats
	if n := st.commits.Load(); n > 0 {
		r.metric("commits", float64(n))
		r.metric("commits_per_s", round1(float64(n)/time.Duration(st.commitNanos.Load()).Seconds()))
	}
	for name, v := range map[string]int64{
		"reconnects": st.reconnects.Load(), "retries": st.retries.Load(), "rate_limited": st.rateLimited.Load(),
		"relay_duplicates": st.duplicates.Load(), "rereads": st.rereads.Load(), "repair_reads": st.repairs.Load(),
		"released_flags": st.released.Load(),
	} {
		if v > 0 {
			r.metric(name, float64(v))
		}
	}
	for _, f := range faults {
		r.note("relay trouble worked around: %s", f)
	}
	if st.repairs.Load() > 0 {
		r.note("%d members fell behind live delivery and read the stored events again (%d events, %d of which had never arrived on their connection)",
			st.repairs.Load(), st.repairEvents.Load(), st.repairMissed.Load())
	}
	var twice, failed int
	var first string
	for _, m := range s.members {
		m.mu.Lock()
		twice += m.twice
		for id, err := range m.unprocessable {
			if !s.corrupt[id] {
				failed++
				first = fmt.Sprintf("%s: event %.16s: %v", m.name, id, err)
			}
		}
		m.mu.Unlock()
	}
	if twice > 0 {
		r.check("no message applied twice", StatusFail, "%d payloads reached an application twice", twice)
	}
	if failed > 0 {
		r.check("every event processable", StatusFail, "%d times a member could not process an event; for example %s", failed, first)
	}
}

func millis(d time.Duration) float64 { return round1(float64(d) / float64(time.Millisecond)) }

func round1(v float64) float64 { return float64(int64(v*10+0.5)) / 10 }

// percentile is the p-th percentile (nearest rank).
func percentile(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(0, min(len(s), i)-1)]
}
