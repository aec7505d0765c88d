package mlsverify

import (
	"context"
	"encoding/hex"
	"fmt"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/marmot"
)

// inviteAndChat: N members invited, half one by one and the rest in
// batches; every member sends a message and every message must reach and
// decrypt at every member. Delivery latency is measured from the sender's
// EVENT to the event's arrival at each receiving member's connection.
func inviteAndChat(s *sim) error {
	r := s.res
	n := s.cfg.Members
	ms, err := s.addMembers(n)
	if err != nil {
		return err
	}
	admin := ms[0]
	if err := s.create(admin); err != nil {
		return err
	}
	oneByOne := (n - 1) / 2
	for _, m := range ms[1 : 1+oneByOne] {
		if err := s.invite(admin, m); err != nil {
			return err
		}
		s.progress(false, "members joined %d/%d (one by one), epoch %d", len(s.active()), n, epochOf(admin))
	}
	rest := ms[1+oneByOne:]
	batch := max(2, (len(rest)+2)/3)
	batches := 0
	for i := 0; i < len(rest); i += batch {
		if err := s.invite(admin, rest[i:min(i+batch, len(rest))]...); err != nil {
			return err
		}
		batches++
		s.progress(false, "members joined %d/%d (batches of %d), epoch %d", len(s.active()), n, batch, epochOf(admin))
	}
	joined := len(s.active())
	r.expect("every member joined", joined == n, StatusFail, "%d of %d in the group (%d one by one, %d in %d batches)", joined, n, oneByOne, len(rest), batches)
	s.reportWelcomes()

	s.progress(true, "%d members in the group; every member sends a message", joined)
	ids, err := s.chat(ms, "hello")
	if err != nil {
		r.check("every message reached every member", StatusFail, "%s", describe(err, nil))
		return nil
	}
	r.check("every message reached every member", StatusPass, "%d messages, each decrypted by the %d other members", len(ids), n-1)
	r.metric("messages", float64(len(ids)))
	r.metric("joined_one_by_one", float64(oneByOne))
	r.metric("joined_in_batches", float64(len(rest)))
	s.giftWrapPrivacy(ms[1])
	return nil
}

// invite has by invite the given members in one commit: their KeyPackages
// found by author, the commit published and applied, Welcomes sent and
// joined, every member on the new state.
func (s *sim) invite(by *member, who ...*member) error {
	var kps []*nostr.Event
	for _, m := range who {
		kp, err := s.discover(by, m)
		if err != nil {
			return err
		}
		kps = append(kps, kp)
	}
	return s.commit(by, func(g *marmot.Group) (*marmot.Outgoing, error) { return g.Invite(kps...) })
}

// grow makes a group of n members: the first creates it and invites the
// others in batches.
func (s *sim) grow(n, batch int) ([]*member, error) {
	ms, err := s.addMembers(n)
	if err != nil {
		return nil, err
	}
	if err := s.create(ms[0]); err != nil {
		return nil, err
	}
	for i := 1; i < n; i += batch {
		if err := s.invite(ms[0], ms[i:min(i+batch, n)]...); err != nil {
			return nil, err
		}
		s.progress(false, "members joined %d/%d, epoch %d", len(s.active()), n, epochOf(ms[0]))
	}
	return ms, nil
}

func epochOf(m *member) uint64 {
	e, _, _ := m.state()
	return e
}

// reportWelcomes records how the Welcomes travelled.
func (s *sim) reportWelcomes() {
	r := s.res
	w := &s.wsizes
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.maxRumor > 0 {
		r.metric("welcome_rumor_max_bytes", float64(w.maxRumor))
	}
	if w.maxWrap > 0 {
		r.metric("giftwrap_max_bytes", float64(w.maxWrap))
	}
	if w.lastFitted > 0 {
		r.metric("giftwrap_last_fit_members", float64(w.lastFitted))
	}
	switch {
	case w.oob == 0:
		r.check("every Welcome travelled by gift wrap", StatusPass, "%d gift wraps, the largest %d bytes", w.wrapped, w.maxWrap)
	default:
		detail := fmt.Sprintf("%d of %d Welcomes were handed to their joiners out of band, outside the protocol, to go on measuring", w.oob, w.oob+w.wrapped)
		if w.firstTooBig > 0 {
			detail += fmt.Sprintf("; from a group of %d members on, the gift-wrapped Welcome exceeds NIP-44's 65,535-byte plaintext limit (the Welcome carries the whole ratchet tree, so it grows with the group whatever the batch): %s", w.firstTooBig, w.tooBigReason)
			r.metric("giftwrap_limit_members", float64(w.firstTooBig))
		}
		if w.refused > 0 {
			detail += "; the relay refused gift wraps " + w.refusedReason
		}
		r.check("every Welcome travelled by gift wrap", StatusWarn, "%s", detail)
		r.metric("welcomes_out_of_band", float64(w.oob))
	}
}

// giftWrapPrivacy asks for a member's gift wraps as someone else: without
// AUTH, and authenticated as another account. NIP-59 wraps hide sender
// and content, but who receives Welcomes, and when, is metadata a relay
// keeps to the recipient when it serves kind 1059 only to its p.
func (s *sim) giftWrapPrivacy(victim *member) {
	r := s.res
	secret := seedBytes(s.cfg.Seed, s.name+"/outsider")
	outsider, err := marmot.AccountFromHex(hex.EncodeToString(secret[:]))
	if err != nil {
		r.check("gift wraps served only to their recipient", StatusFail, "%v", err)
		return
	}
	count := func(signer marmot.Signer) (int, error) {
		opts := marmot.ClientOptions{Timeout: s.cfg.Timeout}
		if signer != nil {
			opts.Signer = signer
		}
		ctx, cancel := context.WithTimeout(s.ctx, 2*s.cfg.Timeout)
		defer cancel()
		c, err := marmot.Dial(ctx, victim.conn.url, opts)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		got, err := c.Fetch(ctx, nostr.Filter{Kinds: []int{marmot.KindGiftWrap}, Tags: nostr.TagMap{"p": {victim.pub().Hex()}}})
		if rejected(err) {
			return 0, nil // refused: nothing served
		}
		return len(got), err
	}
	anon, err1 := count(nil)
	other, err2 := count(outsider)
	switch {
	case err1 != nil || err2 != nil:
		r.check("gift wraps served only to their recipient", StatusFail, "reading as an outsider failed: %v %v", err1, err2)
	case anon > 0 || other > 0:
		r.check("gift wraps served only to their recipient", StatusWarn,
			"%s's gift wraps are served to anyone: %d to a client without AUTH, %d to another authenticated account", victim.name, anon, other)
	default:
		r.check("gift wraps served only to their recipient", StatusPass, "none served without AUTH or to another account")
	}
}
