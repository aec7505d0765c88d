package mlsverify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/marmot"
	"github.com/burrow-relay/burrow/mls"
)

// delivery is one kind 445 event handed to a member.
type delivery struct {
	ev  *nostr.Event
	seq uint64
	at  time.Time
}

// member is one simulated Marmot user: its own account, KeyPackage and MLS
// state, reading and writing through a shared connection.
type member struct {
	s    *sim
	name string
	acct *marmot.Account
	conn *conn
	// kpRand and groupRand make the member's keys and MLS randomness
	// follow the run's seed.
	kpRand, groupRand io.Reader

	bundle *marmot.KeyPackageBundle
	kp     *nostr.Event

	mu sync.Mutex
	g  *marmot.Group
	// removed: this member's removal was processed; offline: deliveries
	// are dropped (a device that is off).
	removed, offline bool
	// lastSeq and lastCreated are the newest seq and created_at among the
	// events processed: where a catch-up read starts.
	lastSeq, lastCreated uint64
	// apps counts each app payload's deliveries to the application (a
	// branch switch that withdraws one takes it back).
	apps map[[32]byte]int
	// twice counts payloads delivered to the application more than once.
	twice int
	// unprocessable holds the events this member could decrypt but not
	// process (a corrupt Commit), by event id.
	unprocessable map[string]error
	// keys are every kind 445 key this member held, one per state.
	keys    [][]byte
	lastKey []byte
	// lastErr is the last processing failure, for a report line.
	lastErr string

	// proposals counts proposals processed.
	proposals int

	qmu   sync.Mutex
	queue []delivery
	busy  bool
	wake  chan struct{}
}

// seedBytes derives 32 bytes from the run's seed and a label, so that the
// same seed gives the same accounts, keys and choices.
func seedBytes(seed uint64, label string) [32]byte {
	return sha256.Sum256(fmt.Appendf(nil, "burrow-harness/%d/%s", seed, label))
}

func (s *sim) newMember(i int, cn *conn) (*member, error) {
	label := fmt.Sprintf("%s/%d", s.name, i)
	secret := seedBytes(s.cfg.Seed, label+"/account")
	acct, err := marmot.AccountFromHex(hex.EncodeToString(secret[:]))
	if err != nil {
		return nil, err
	}
	m := &member{s: s, name: fmt.Sprintf("m%d", i), acct: acct, conn: cn,
		kpRand:    rand.NewChaCha8(seedBytes(s.cfg.Seed, label+"/keypackage")),
		groupRand: rand.NewChaCha8(seedBytes(s.cfg.Seed, label+"/group")),
		apps:      map[[32]byte]int{}, unprocessable: map[string]error{}, wake: make(chan struct{}, 1)}
	if m.bundle, err = marmot.NewKeyPackage(acct, marmot.KeyPackageOptions{Rand: m.kpRand}); err != nil {
		return nil, err
	}
	slot := seedBytes(s.cfg.Seed, label+"/slot")
	if m.kp, err = m.bundle.Event(acct, hex.EncodeToString(slot[:]), time.Now()); err != nil {
		return nil, err
	}
	go m.run()
	return m, nil
}

func (m *member) pub() marmot.Pubkey { return m.acct.PublicKey() }

func (m *member) opts() marmot.GroupOptions { return marmot.GroupOptions{Rand: m.groupRand} }

// receiving reports whether deliveries reach this member.
func (m *member) receiving() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.offline && !m.removed
}

func (m *member) setOffline(off bool) {
	m.mu.Lock()
	m.offline = off
	m.mu.Unlock()
}

// push queues a delivery; the member's goroutine processes it once the
// member has joined.
func (m *member) push(d delivery) {
	m.qmu.Lock()
	m.queue = append(m.queue, d)
	m.qmu.Unlock()
	m.poke()
}

func (m *member) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// pending is how many deliveries wait or are being processed.
func (m *member) pending() int {
	m.qmu.Lock()
	defer m.qmu.Unlock()
	if m.busy {
		return len(m.queue) + 1
	}
	return len(m.queue)
}

// run processes deliveries in arrival order until the scenario ends.
func (m *member) run() {
	for {
		select {
		case <-m.wake:
		case <-m.s.ctx.Done():
			return
		}
		for {
			m.mu.Lock()
			joined := m.g != nil
			m.mu.Unlock()
			if !joined {
				break
			}
			m.qmu.Lock()
			if len(m.queue) == 0 {
				m.qmu.Unlock()
				break
			}
			d := m.queue[0]
			m.queue[0] = delivery{}
			m.queue = m.queue[1:]
			m.busy = true
			m.qmu.Unlock()
			release, err := m.s.cpu.acquire(m.s.ctx)
			if err != nil {
				return
			}
			m.process(d)
			release()
			m.qmu.Lock()
			m.busy = false
			m.qmu.Unlock()
		}
	}
}

// process runs one event through the member's group.
func (m *member) process(d delivery) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.g == nil || m.removed {
		return
	}
	m.lastSeq = max(m.lastSeq, d.seq)
	m.lastCreated = max(m.lastCreated, uint64(d.ev.CreatedAt))
	start := time.Now()
	r, err := m.g.Receive(d.ev)
	if err == nil && r.Kind == marmot.ReceivedCommit {
		m.s.stats.processed.Add(1)
		m.s.stats.processNanos.Add(int64(time.Since(start)))
	}
	switch {
	case err == nil:
	case errors.Is(err, marmot.ErrDuplicate):
		// A copy of something processed (a re-read, or this member's own
		// event coming back): nothing to do.
		return
	case errors.Is(err, marmot.ErrUndecryptable):
		// An epoch this member never held (before it joined) or has not
		// reached yet: kept by the group and retried when keys change.
		return
	case errors.Is(err, marmot.ErrStale):
		return
	case errors.Is(err, mls.ErrInactive):
		m.removed = true
		return
	default:
		m.unprocessable[d.ev.ID] = err
		m.lastErr = fmt.Sprintf("event %.16s: %v", d.ev.ID, err)
		return
	}
	m.absorb(r)
	m.noteKey()
}

// absorb records what processing delivered to the application.
func (m *member) absorb(r *marmot.Received) {
	if r.RemovedSelf {
		m.removed = true
	}
	switch r.Kind {
	case marmot.ReceivedApp:
		m.deliver(r.ID)
	case marmot.ReceivedProposal:
		m.proposals++
	}
	for _, id := range r.Invalidated {
		m.apps[id]--
	}
	for _, got := range r.Recovered {
		m.deliver(got.ID)
	}
	for _, u := range r.Unlocked {
		m.absorb(u)
	}
}

func (m *member) deliver(id [32]byte) {
	m.apps[id]++
	if m.apps[id] == 2 {
		m.twice++
	}
	if at, ok := m.s.sentMessage(id); ok {
		m.s.decrypted(time.Since(at))
	}
}

// noteKey remembers the current state's kind 445 key (called with mu
// held).
func (m *member) noteKey() {
	if m.g == nil || m.removed || m.g.MLS().Active() != nil {
		return
	}
	k, err := marmot.GroupEventKey(m.g.MLS())
	if err != nil || bytes.Equal(k, m.lastKey) {
		return
	}
	m.lastKey = k
	m.keys = append(m.keys, k)
}

// state is the member's epoch and epoch authenticator.
func (m *member) state() (epoch uint64, auth []byte, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.g == nil || m.removed || m.g.MLS().Active() != nil {
		return 0, nil, false
	}
	return m.g.Epoch(), m.g.MLS().EpochAuthenticator(), true
}

func (m *member) isRemoved() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.removed
}

// has reports whether the application got the payload.
func (m *member) has(id [32]byte) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.apps[id] > 0
}

func (m *member) rewinds() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.g == nil {
		return 0
	}
	return m.g.Rewinds
}

// join enters the group from the Welcome addressed to this member: the
// gift wrap read from the member's inbox relay (NIP-42 AUTH when the relay
// asks), or the rumor handed over out of band when the Welcome could not
// travel by gift wrap. Then the used KeyPackage is replaced in its slot
// and deleted (marmot.ReplaceKeyPackage).
func (m *member) join(ctx context.Context, w welcomeFor) error {
	var rumor *marmot.WelcomeRumor
	var err error
	if w.oob != nil {
		if rumor, err = marmot.ParseWelcomeRumor([]byte(w.oob.String())); err != nil {
			return err
		}
	} else if rumor, err = m.readWelcome(ctx); err != nil {
		return err
	}
	release, err := m.s.cpu.acquire(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	g, err := marmot.Join(m.acct, rumor, m.bundle, m.opts())
	m.s.stats.joins.Add(1)
	m.s.stats.joinNanos.Add(int64(time.Since(start)))
	release()
	if err != nil {
		return fmt.Errorf("%s: join: %w", m.name, err)
	}
	m.mu.Lock()
	m.g = g
	m.noteKey()
	m.mu.Unlock()
	m.poke()
	if m.s.skipReplace {
		return nil
	}
	used := m.kp
	return m.conn.do(ctx, func(c *marmot.Client) error {
		b, ev, err := marmot.ReplaceKeyPackage(ctx, []*marmot.Client{c}, m.acct, used, marmot.KeyPackageOptions{Rand: m.kpRand})
		if ev != nil {
			m.bundle, m.kp = b, ev
		}
		return err
	})
}

// readWelcome polls the member's inbox relay for the gift wrap carrying
// the Welcome for its KeyPackage.
func (m *member) readWelcome(ctx context.Context) (*marmot.WelcomeRumor, error) {
	deadline := time.Now().Add(m.s.cfg.Timeout)
	backoff := 20 * time.Millisecond
	var last error
	for {
		rumor, err := m.fetchWelcome(ctx)
		if err == nil && rumor != nil {
			return rumor, nil
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			if last == nil {
				last = fmt.Errorf("no gift wrap with a Welcome for KeyPackage %.16s arrived within %v", m.kp.ID, m.s.cfg.Timeout)
			}
			return nil, fmt.Errorf("%s: %w", m.name, last)
		}
		if err := sleep(ctx, backoff); err != nil {
			return nil, err
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// fetchWelcome reads the member's gift wraps once, on a connection of its
// own authenticated as its account (the one connection that reveals who
// it is, as an inbox read does), and opens the one for its KeyPackage.
func (m *member) fetchWelcome(ctx context.Context) (*marmot.WelcomeRumor, error) {
	release, err := m.s.private.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	c, err := marmot.Dial(ctx, m.conn.url, marmot.ClientOptions{Signer: m.acct, Timeout: m.s.cfg.Timeout})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	wraps, err := c.GiftWraps(ctx, m.pub())
	if err != nil {
		return nil, err
	}
	for _, gw := range wraps {
		w, err := marmot.UnwrapWelcome(gw, m.acct)
		if err != nil {
			continue // another sender's wrap, or one not for us
		}
		if w.KeyPackageEvent == m.kp.ID {
			return w, nil
		}
	}
	return nil, nil
}

// semaphore bounds concurrent work (private connections).
type semaphore chan struct{}

func (s semaphore) acquire(ctx context.Context) (func(), error) {
	select {
	case s <- struct{}{}:
		return func() { <-s }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
