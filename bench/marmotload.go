package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/marmot"
)

// MarmotConfig describes the busy-Marmot-relay load (issue 17 item 4): many subscriber
// connections from many loopback source addresses, each subscribed to its group's kind 445s
// (#h), its own gift wraps (kind 1059, #p, after NIP-42 AUTH) and ten authors' KeyPackages (kind
// 30443 by authors), while a few publisher connections send kind 445s, gift wraps and
// KeyPackages at a fixed offered rate (open loop: each event is written at its due time whether
// or not earlier OKs came back). Zero fields take the defaults noted.
type MarmotConfig struct {
	// URL is the relay's websocket address; it must be on the loopback network, since subscribers
	// dial from other 127.0.0.0/8 addresses. Required.
	URL string
	// Subscribers is how many subscriber connections are opened (default 2,000).
	Subscribers int
	// PerAddress is how many subscribers share one source address (default 50, under Burrow's
	// default 64 connections per address): subscribers dial from 127.0.0.2 upwards.
	PerAddress int
	// Groups is how many h values the kind 445s and subscribers spread over (default 100).
	Groups int
	// AuthorPool is how many KeyPackage authors exist (default 1,000); each subscriber follows
	// ten of them.
	AuthorPool int
	// Publishers is how many connections publish (default 8), from 127.0.0.1.
	Publishers int
	// GroupRate, WrapRate and KeyPackageRate are the offered events per second of kind 445,
	// 1059 and 30443 (defaults 1,500, 20 and 10).
	GroupRate, WrapRate, KeyPackageRate float64
	// Duration is how long events are offered (default 30 s).
	Duration time.Duration
	// ContentBytes is the kind 445 content length (default 600); WrapBytes the gift wraps'
	// (default 1,500, a Welcome's order of size).
	ContentBytes, WrapBytes int
	// OKTimeout bounds the wait for each OK after its event was due (default 10 s), and Settle
	// the wait for deliveries after the last OK (default 10 s).
	OKTimeout, Settle time.Duration
	// KeepSamples is how many problems the result keeps verbatim (default 5).
	KeepSamples int
	// AroundRun, if set, is called when the first event is due; the function it returns is
	// called once the last delivery is in, and its two durations (CPU time of the relay process
	// and of its database server) are kept in MarmotResult.
	AroundRun func() func() (relayCPU, serverCPU time.Duration)
}

// Defaults for MarmotConfig's zero fields.
const (
	DefaultMarmotSubscribers = 2000
	DefaultMarmotPerAddress  = 50
	DefaultMarmotGroups      = 100
	DefaultMarmotAuthorPool  = 1000
	DefaultMarmotPublishers  = 8
	DefaultMarmotGroupRate   = 1500
	DefaultMarmotWrapRate    = 20
	DefaultMarmotKPRate      = 10
	DefaultMarmotDuration    = 30 * time.Second
	DefaultMarmotWrapBytes   = 1500
	// marmotFollows is how many KeyPackage authors each subscriber follows.
	marmotFollows = 10
)

func (c MarmotConfig) withDefaults() (MarmotConfig, error) {
	base, err := Config{URL: c.URL, Conns: c.Publishers, Groups: c.Groups, ContentBytes: c.ContentBytes,
		OKTimeout: c.OKTimeout, KeepFailures: c.KeepSamples}.withDefaults()
	if err != nil {
		return c, err
	}
	c.Publishers, c.ContentBytes, c.OKTimeout, c.KeepSamples = base.Conns, base.ContentBytes, base.OKTimeout, base.KeepFailures
	ints := []struct {
		v   *int
		def int
	}{
		{&c.Subscribers, DefaultMarmotSubscribers}, {&c.PerAddress, DefaultMarmotPerAddress},
		{&c.Groups, DefaultMarmotGroups}, {&c.AuthorPool, DefaultMarmotAuthorPool}, {&c.WrapBytes, DefaultMarmotWrapBytes},
	}
	for _, f := range ints {
		if *f.v < 0 {
			return c, fmt.Errorf("%w: negative marmot load setting", ErrConfig)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	floats := []struct {
		v   *float64
		def float64
	}{{&c.GroupRate, DefaultMarmotGroupRate}, {&c.WrapRate, DefaultMarmotWrapRate}, {&c.KeyPackageRate, DefaultMarmotKPRate}}
	for _, f := range floats {
		if *f.v < 0 {
			return c, fmt.Errorf("%w: negative rate", ErrConfig)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if c.Duration < 0 || c.Settle < 0 {
		return c, fmt.Errorf("%w: negative duration", ErrConfig)
	}
	if c.Duration == 0 {
		c.Duration = DefaultMarmotDuration
	}
	if c.Settle == 0 {
		c.Settle = 10 * time.Second
	}
	if c.AuthorPool < marmotFollows {
		return c, fmt.Errorf("%w: AuthorPool %d is under %d", ErrConfig, c.AuthorPool, marmotFollows)
	}
	if addrs := (c.Subscribers + c.PerAddress - 1) / c.PerAddress; addrs > 250 {
		return c, fmt.Errorf("%w: %d source addresses needed, at most 250 (127.0.0.2-127.0.0.251)", ErrConfig, addrs)
	}
	return c, nil
}

// Event classes of the load.
const (
	classGroup uint8 = iota // kind 445
	classWrap               // kind 1059
	classKP                 // kind 30443
)

// loadEvent is one event of the schedule.
type loadEvent struct {
	presigned
	class  uint8
	group  int32 // kind 445: its group; else -1
	target int32 // kind 1059: the recipient subscriber; kind 30443: the author; else -1
	due    time.Duration
}

// loadSub is one subscriber: its key (for AUTH and #p), group and followed authors.
type loadSub struct {
	sk, pk  string
	group   int32
	follows []int32
}

// marmotPlan is everything signed before timing starts.
type marmotPlan struct {
	events    []loadEvent
	byID      map[string]int32
	groups    []string
	subs      []loadSub
	authorPKs []string
	followers [][]int32 // author -> subscribers following it
}

// recipients returns the subscribers that must receive event i once it is accepted.
func (p *marmotPlan) recipients(i int, groupSize int) []int32 {
	e := p.events[i]
	switch e.class {
	case classGroup:
		out := make([]int32, 0, groupSize)
		for s := int(e.group); s < len(p.subs); s += len(p.groups) {
			out = append(out, int32(s))
		}
		return out
	case classWrap:
		return []int32{e.target}
	default:
		return p.followers[e.target]
	}
}

// MarmotResult is what one load run measured. OK latency runs from writing an EVENT to reading
// its OK; delivery latency from writing it to a subscriber reading it.
type MarmotResult struct {
	Subscribers, Addresses, Groups, Publishers int
	// SetupTime is how long connecting and subscribing everyone took.
	SetupTime time.Duration
	// Offered counts events by class (445, 1059, 30443); Accepted those answered OK true.
	Offered, Accepted [3]int
	Refused           int
	RefusedSamples    []string
	// Unanswered counts events whose OK had not come OKTimeout after the last was due; their
	// deliveries are not expected, and the run fails its goal.
	Unanswered int
	// Duration is from the first event due to the last written; SentPerSec the rate achieved.
	Duration   time.Duration
	SentPerSec float64
	// LagP99 is how late the client wrote events against their schedule (its own slowness or
	// TCP back-pressure from the relay).
	LagP99                 time.Duration
	OKP50, OKP99, OKMax    time.Duration
	DelP50, DelP99, DelMax time.Duration
	// Deliveries is the check of every subscriber's stream (see checkDeliveries).
	Deliveries deliveryCheck
	// Window runs from the first event due to the last delivery in; RelayCPU and ServerCPU are
	// what MarmotConfig.AroundRun measured over it (0 without it).
	Window              time.Duration
	RelayCPU, ServerCPU time.Duration
	// Dropped counts subscriber connections that ended before the run did.
	Dropped        int
	DroppedSamples []string
}

// dialFrom is a websocket dialer whose connections leave from local (nil: the default).
func dialFrom(local net.IP, timeout time.Duration) *websocket.Dialer {
	d := &net.Dialer{Timeout: timeout}
	if local != nil {
		d.LocalAddr = &net.TCPAddr{IP: local}
	}
	return &websocket.Dialer{HandshakeTimeout: timeout, NetDialContext: d.DialContext,
		ReadBufferSize: 16 << 10, WriteBufferSize: 4 << 10}
}

// sourceAddr is subscriber s's loopback source address: 127.0.0.2 upwards, perAddr each.
func sourceAddr(s, perAddr int) net.IP {
	return net.IPv4(127, 0, 0, byte(2+s/perAddr))
}

// RunMarmot runs the busy-Marmot-relay load against cfg.URL. It returns an error if the run could
// not complete (a dial or subscription that failed, an OK that never came); refusals, lost,
// repeated or misordered deliveries and dropped subscribers are counted in the result.
func RunMarmot(ctx context.Context, cfg MarmotConfig) (MarmotResult, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return MarmotResult{}, err
	}
	plan, err := prepareMarmot(ctx, cfg)
	if err != nil {
		return MarmotResult{}, fmt.Errorf("bench: prepare marmot load: %w", err)
	}
	res := MarmotResult{Subscribers: cfg.Subscribers, Groups: cfg.Groups, Publishers: cfg.Publishers,
		Addresses: (cfg.Subscribers + cfg.PerAddress - 1) / cfg.PerAddress}
	for _, e := range plan.events {
		res.Offered[e.class]++
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	setupStart := time.Now()
	subConns, err := subscribeAll(runCtx, cfg, plan)
	var allConns []*websocket.Conn
	closeAll := func() {
		for _, c := range allConns {
			_ = c.Close()
		}
	}
	defer func() { closeAll() }()
	allConns = append(allConns, subConns...)
	if err != nil {
		return res, err
	}
	pubConns, err := dialAll(runCtx, cfg.URL, cfg.Publishers, cfg.OKTimeout)
	allConns = append(allConns, pubConns...)
	if err != nil {
		return res, err
	}
	res.SetupTime = time.Since(setupStart)
	go func() {
		<-runCtx.Done()
		closeAll()
	}()

	n := len(plan.events)
	var (
		sentAt   = make([]time.Duration, n)
		okAt     = make([]time.Duration, n)
		accepted = make([]bool, n)
		seqs     = make([]int64, n)
		reasons  = make([]string, n)
		received atomic.Int64
		got      = make([][]delivery, len(subConns))
		dropped  = make([]error, len(subConns))
		readers  sync.WaitGroup
		running  atomic.Bool
	)
	running.Store(true)
	var endCPU func() (time.Duration, time.Duration)
	if cfg.AroundRun != nil {
		endCPU = cfg.AroundRun()
	}
	start := time.Now()
	for s, c := range subConns {
		readers.Add(1)
		go func() {
			defer readers.Done()
			got[s], dropped[s] = receive(c, plan.byID, start, &received, n/cfg.Groups+64)
			if !running.Load() {
				dropped[s] = nil // closed by us at the end
			}
		}()
	}

	var (
		pubs       sync.WaitGroup
		unanswered atomic.Int64
		errOnce    sync.Once
		firstErr   error
	)
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err })
		cancel()
	}
	lastDue := plan.events[n-1].due
	for p, c := range pubConns {
		mine := make([]int, 0, n/len(pubConns)+1)
		for i := p; i < n; i += len(pubConns) {
			mine = append(mine, i)
		}
		pubs.Add(2)
		go func() {
			defer pubs.Done()
			for _, i := range mine {
				if d := time.Until(start.Add(plan.events[i].due)); d > 0 {
					time.Sleep(d)
				}
				sentAt[i] = time.Since(start)
				_ = c.SetWriteDeadline(time.Now().Add(cfg.OKTimeout))
				if err := c.WriteMessage(websocket.TextMessage, plan.events[i].frame); err != nil {
					fail(fmt.Errorf("publisher %d: write: %w", p, err))
					return
				}
			}
		}()
		go func() {
			defer pubs.Done()
			_ = c.SetReadDeadline(start.Add(lastDue + cfg.OKTimeout))
			var buf []byte
			for left := len(mine); left > 0; {
				var err error
				if buf, err = readMessage(c, buf); err != nil {
					if errors.Is(err, os.ErrDeadlineExceeded) {
						// A relay this far behind has failed the run's goal; what it did answer
						// is still worth reporting.
						unanswered.Add(int64(left))
						return
					}
					fail(fmt.Errorf("publisher %d: %d OKs missing: %w", p, left, err))
					return
				}
				at := time.Since(start)
				id, ok, reason, isOK := parseOK(buf)
				if !isOK {
					continue
				}
				i, found := plan.byID[id]
				if !found {
					fail(fmt.Errorf("publisher %d: OK for unknown id %s", p, id))
					return
				}
				okAt[i], accepted[i], reasons[i] = at, ok, reason
				if ok && plan.events[i].class == classGroup {
					if seq, err := parseSeq(reason); err == nil {
						seqs[i] = seq
					}
				}
				left--
			}
		}()
	}
	pubs.Wait()
	if firstErr != nil {
		if ctx.Err() != nil {
			return res, fmt.Errorf("bench: run interrupted: %w", ctx.Err())
		}
		return res, fmt.Errorf("bench: marmot load against %s: %w", cfg.URL, firstErr)
	}

	// Deliveries still in flight get Settle to arrive once every OK is in.
	expect := make([][]int32, len(subConns))
	var want int64
	groupSize := (len(plan.subs) + len(plan.groups) - 1) / len(plan.groups)
	for i := range plan.events {
		if !accepted[i] {
			continue
		}
		for _, s := range plan.recipients(i, groupSize) {
			expect[s] = append(expect[s], int32(i))
			want++
		}
	}
	for deadline := time.Now().Add(cfg.Settle); received.Load() < want && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	res.Window = time.Since(start)
	if endCPU != nil {
		res.RelayCPU, res.ServerCPU = endCPU()
	}
	time.Sleep(50 * time.Millisecond) // a duplicate may still follow the last expected delivery
	running.Store(false)
	cancel()
	readers.Wait()

	// Tally.
	var okLat, delLat, lags []time.Duration
	var written time.Duration
	res.Unanswered = int(unanswered.Load())
	for i, e := range plan.events {
		lags = append(lags, sentAt[i]-e.due)
		written = max(written, sentAt[i])
		if okAt[i] == 0 {
			continue // no OK by the deadline
		}
		okLat = append(okLat, okAt[i]-sentAt[i])
		if accepted[i] {
			res.Accepted[e.class]++
		} else {
			res.Refused++
			if len(res.RefusedSamples) < cfg.KeepSamples {
				res.RefusedSamples = append(res.RefusedSamples, e.id+": "+reasons[i])
			}
		}
	}
	group := make([]int32, n)
	arrivals := make([][]int32, len(got))
	for i, e := range plan.events {
		group[i] = e.group
	}
	for s, ds := range got {
		arrivals[s] = make([]int32, 0, len(ds))
		for _, d := range ds {
			delLat = append(delLat, d.at-sentAt[d.event])
			if okAt[d.event] != 0 { // whether an unanswered event was stored is unknown
				arrivals[s] = append(arrivals[s], d.event)
			}
		}
		if dropped[s] != nil {
			res.Dropped++
			if len(res.DroppedSamples) < cfg.KeepSamples {
				res.DroppedSamples = append(res.DroppedSamples, fmt.Sprintf("subscriber %d: %v", s, dropped[s]))
			}
		}
	}
	res.Deliveries = checkDeliveries(expect, arrivals, seqs, group, cfg.KeepSamples)
	res.Duration = written - plan.events[0].due
	if s := res.Duration.Seconds(); s > 0 {
		res.SentPerSec = float64(n) / s
	}
	res.LagP99 = percentile(lags, 99)
	res.OKP50, res.OKP99, res.OKMax = percentile(okLat, 50), percentile(okLat, 99), percentile(okLat, 100)
	res.DelP50, res.DelP99, res.DelMax = percentile(delLat, 50), percentile(delLat, 99), percentile(delLat, 100)
	return res, nil
}

// delivery is one event a subscriber read, and when (since the run's start).
type delivery struct {
	event int32
	at    time.Duration
}

var (
	eventLabel = []byte(`["EVENT",`)
	idField    = []byte(`"id":"`)
)

// receive reads a subscriber's connection until it fails (closed at the end of the run, or by
// the relay) and returns what arrived. It decodes only the event id, so the client stays cheap.
func receive(c *websocket.Conn, byID map[string]int32, start time.Time, received *atomic.Int64, capHint int) ([]delivery, error) {
	out := make([]delivery, 0, capHint)
	_ = c.SetReadDeadline(time.Time{})
	var buf []byte
	for {
		var err error
		if buf, err = readMessage(c, buf); err != nil {
			return out, err
		}
		at := time.Since(start)
		if !bytes.HasPrefix(buf, eventLabel) {
			if bytes.HasPrefix(buf, []byte(`["CLOSED"`)) {
				return out, fmt.Errorf("subscription closed by the relay: %s", buf)
			}
			continue
		}
		k := bytes.Index(buf, idField)
		if k < 0 || len(buf) < k+len(idField)+64 {
			return out, fmt.Errorf("EVENT without an id: %.200s", buf)
		}
		i, found := byID[string(buf[k+len(idField):k+len(idField)+64])]
		if !found {
			return out, fmt.Errorf("EVENT of unknown id: %.200s", buf)
		}
		out = append(out, delivery{event: i, at: at})
		received.Add(1)
	}
}

// readMessage reads one websocket message into buf's storage.
func readMessage(c *websocket.Conn, buf []byte) ([]byte, error) {
	_, r, err := c.NextReader()
	if err != nil {
		return buf[:0], err
	}
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, max(4096, cap(buf)))
		}
		k, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+k]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// parseOK decodes an OK message; isOK is false for anything else.
func parseOK(msg []byte) (id string, ok bool, reason string, isOK bool) {
	if !bytes.HasPrefix(msg, []byte(`["OK"`)) {
		return "", false, "", false
	}
	var parts []json.RawMessage
	if json.Unmarshal(msg, &parts) != nil || len(parts) < 3 {
		return "", false, "", false
	}
	if json.Unmarshal(parts[1], &id) != nil || json.Unmarshal(parts[2], &ok) != nil {
		return "", false, "", false
	}
	if len(parts) > 3 {
		_ = json.Unmarshal(parts[3], &reason)
	}
	return id, ok, reason, true
}

// subscribeAll connects and subscribes every subscriber: one source address at a time per
// goroutine (so no address has more than one stored query in flight), all addresses at once.
func subscribeAll(ctx context.Context, cfg MarmotConfig, plan *marmotPlan) ([]*websocket.Conn, error) {
	conns := make([]*websocket.Conn, len(plan.subs))
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for first := 0; first < len(plan.subs); first += cfg.PerAddress {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dialer := dialFrom(sourceAddr(first, cfg.PerAddress), cfg.OKTimeout)
			for s := first; s < min(first+cfg.PerAddress, len(plan.subs)); s++ {
				if ctx.Err() != nil {
					return
				}
				c, err := subscribe(ctx, dialer, cfg, plan, s)
				if c != nil {
					conns[s] = c
				}
				if err != nil {
					errOnce.Do(func() {
						firstErr = fmt.Errorf("bench: subscriber %d from %s: %w", s, sourceAddr(s, cfg.PerAddress), err)
					})
					return
				}
			}
		}()
	}
	wg.Wait()
	out := slices.DeleteFunc(conns, func(c *websocket.Conn) bool { return c == nil })
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	return out, firstErr
}

// subscribe opens subscriber s's connection with its three subscriptions: group 445s and
// followed KeyPackages first, then, after answering the relay's AUTH challenge if it sent one,
// its own gift wraps (a relay that restricts wraps refuses a wraps-only REQ without AUTH).
func subscribe(ctx context.Context, dialer *websocket.Dialer, cfg MarmotConfig, plan *marmotPlan, s int) (*websocket.Conn, error) {
	c, resp, err := dialer.DialContext(ctx, cfg.URL, http.Header{})
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	_ = resp.Body.Close()
	sub := plan.subs[s]
	_ = c.SetReadDeadline(time.Now().Add(cfg.OKTimeout))
	_ = c.SetWriteDeadline(time.Now().Add(cfg.OKTimeout))
	authors := make([]string, len(sub.follows))
	for k, a := range sub.follows {
		authors[k] = plan.authorPKs[a]
	}
	reqs := []struct {
		id     string
		filter nostr.Filter
	}{
		{"g", nostr.Filter{Kinds: []int{445}, Tags: nostr.TagMap{"h": {plan.groups[sub.group]}}}},
		{"k", nostr.Filter{Kinds: []int{marmot.KindKeyPackage}, Authors: authors}},
	}
	var challenge string
	var buf []byte
	// wait reads until pred matches a message, keeping an AUTH challenge seen meanwhile.
	wait := func(what string, pred func([]byte) bool) error {
		for {
			if buf, err = readMessage(c, buf); err != nil {
				return fmt.Errorf("waiting for %s: %w", what, err)
			}
			switch {
			case pred(buf):
				return nil
			case bytes.HasPrefix(buf, []byte(`["AUTH"`)):
				var m []string
				if json.Unmarshal(buf, &m) == nil && len(m) == 2 {
					challenge = m[1]
				}
			case bytes.HasPrefix(buf, []byte(`["CLOSED"`)):
				return fmt.Errorf("waiting for %s: %s", what, buf)
			}
		}
	}
	req := func(id string, f nostr.Filter) error {
		msg, err := json.Marshal([]any{"REQ", id, f})
		if err != nil {
			return err
		}
		if err := c.WriteMessage(websocket.TextMessage, msg); err != nil {
			return fmt.Errorf("REQ %s: %w", id, err)
		}
		eose := []byte(`["EOSE","` + id + `"`)
		return wait("EOSE of "+id, func(m []byte) bool { return bytes.HasPrefix(m, eose) })
	}
	for _, r := range reqs {
		if err := req(r.id, r.filter); err != nil {
			return c, err
		}
	}
	if challenge != "" {
		auth := nostr.Event{Kind: nostr.KindClientAuthentication, CreatedAt: nostr.Now(),
			Tags: nostr.Tags{{"relay", cfg.URL}, {"challenge", challenge}}}
		if err := auth.Sign(sub.sk); err != nil {
			return c, fmt.Errorf("sign AUTH: %w", err)
		}
		msg, err := json.Marshal([]any{"AUTH", auth})
		if err != nil {
			return c, err
		}
		if err := c.WriteMessage(websocket.TextMessage, msg); err != nil {
			return c, fmt.Errorf("AUTH: %w", err)
		}
		var authErr error
		if err := wait("OK of AUTH", func(m []byte) bool {
			id, ok, reason, isOK := parseOK(m)
			if isOK && id == auth.ID && !ok {
				authErr = fmt.Errorf("AUTH refused: %s", reason)
			}
			return isOK && id == auth.ID
		}); err != nil {
			return c, err
		}
		if authErr != nil {
			return c, authErr
		}
	}
	if err := req("w", nostr.Filter{Kinds: []int{nostr.KindGiftWrap}, Tags: nostr.TagMap{"p": {sub.pk}}}); err != nil {
		return c, err
	}
	_ = c.SetWriteDeadline(time.Time{})
	return c, nil
}

// prepareMarmot makes the keys, subscribers and the whole schedule, signed.
func prepareMarmot(ctx context.Context, cfg MarmotConfig) (*marmotPlan, error) {
	p := &marmotPlan{groups: make([]string, cfg.Groups), subs: make([]loadSub, cfg.Subscribers),
		authorPKs: make([]string, cfg.AuthorPool), followers: make([][]int32, cfg.AuthorPool)}
	for i := range p.groups {
		p.groups[i] = randomHex(32)
	}
	authorSKs := make([]string, cfg.AuthorPool)
	if err := inParallel(ctx, cfg.AuthorPool, func(a int) error {
		authorSKs[a] = nostr.GeneratePrivateKey()
		pk, err := nostr.GetPublicKey(authorSKs[a])
		p.authorPKs[a] = pk
		return err
	}); err != nil {
		return nil, err
	}
	if err := inParallel(ctx, cfg.Subscribers, func(s int) error {
		sk := nostr.GeneratePrivateKey()
		pk, err := nostr.GetPublicKey(sk)
		if err != nil {
			return err
		}
		follows := make([]int32, marmotFollows)
		for k := range follows {
			follows[k] = int32((s*marmotFollows + k) % cfg.AuthorPool)
		}
		p.subs[s] = loadSub{sk: sk, pk: pk, group: int32(s % cfg.Groups), follows: follows}
		return nil
	}); err != nil {
		return nil, err
	}
	for s, sub := range p.subs {
		for _, a := range slices.Compact(slices.Sorted(slices.Values(sub.follows))) {
			p.followers[a] = append(p.followers[a], int32(s))
		}
	}

	p.events = marmotSchedule(cfg)
	createdAt := time.Now()
	err := inParallel(ctx, len(p.events), func(i int) error {
		e := &p.events[i]
		var evt *nostr.Event
		switch e.class {
		case classGroup:
			evt = &nostr.Event{Kind: 445, Tags: nostr.Tags{{"h", p.groups[e.group]}}, Content: randomContent(cfg.ContentBytes)}
			if err := signAt(evt, nostr.GeneratePrivateKey(), createdAt); err != nil {
				return err
			}
		case classWrap:
			// A wrap is signed by a one-use key and names its recipient; its content is opaque here.
			evt = &nostr.Event{Kind: nostr.KindGiftWrap, Tags: nostr.Tags{{"p", p.subs[e.target].pk}}, Content: randomContent(cfg.WrapBytes)}
			if err := signAt(evt, nostr.GeneratePrivateKey(), createdAt); err != nil {
				return err
			}
		default:
			// A real KeyPackage, as the relay validates it: a fresh one in a fresh slot each time,
			// so no author reaches the slot cap within a run of up to 10 × AuthorPool of them.
			account, err := marmot.AccountFromHex(authorSKs[e.target])
			if err != nil {
				return err
			}
			bundle, err := marmot.NewKeyPackage(account, marmot.KeyPackageOptions{})
			if err != nil {
				return fmt.Errorf("KeyPackage %d: %w", i, err)
			}
			if evt, err = bundle.Event(account, marmot.NewSlot(), createdAt); err != nil {
				return fmt.Errorf("KeyPackage event %d: %w", i, err)
			}
		}
		body, err := evt.MarshalJSON()
		if err != nil {
			return fmt.Errorf("encode event %d: %w", i, err)
		}
		e.id = evt.ID
		e.frame = append(append([]byte(`["EVENT",`), body...), ']')
		return nil
	})
	if err != nil {
		return nil, err
	}
	p.byID = make(map[string]int32, len(p.events))
	for i, e := range p.events {
		p.byID[e.id] = int32(i)
	}
	return p, nil
}

func signAt(evt *nostr.Event, sk string, at time.Time) error {
	evt.CreatedAt = nostr.Timestamp(at.Unix())
	if err := evt.Sign(sk); err != nil {
		return fmt.Errorf("sign kind %d: %w", evt.Kind, err)
	}
	return nil
}

// marmotSchedule is the unsigned schedule: each class at its own fixed rate over cfg.Duration,
// merged in due order. Groups take turns (so each sees an even 445 rate), wraps go to
// subscribers spread over the address range, KeyPackages to authors in turn.
func marmotSchedule(cfg MarmotConfig) []loadEvent {
	var events []loadEvent
	add := func(class uint8, rate float64, target func(k int) (group, target int32)) {
		count := int(rate * cfg.Duration.Seconds())
		for k := range count {
			g, t := target(k)
			events = append(events, loadEvent{class: class, group: g, target: t,
				due: time.Duration(float64(k) * float64(time.Second) / rate)})
		}
	}
	add(classGroup, cfg.GroupRate, func(k int) (int32, int32) { return int32(k % cfg.Groups), -1 })
	add(classWrap, cfg.WrapRate, func(k int) (int32, int32) {
		return -1, int32((k * 7919) % cfg.Subscribers) // a prime stride: every address gets some
	})
	add(classKP, cfg.KeyPackageRate, func(k int) (int32, int32) { return -1, int32(k % cfg.AuthorPool) })
	slices.SortStableFunc(events, func(a, b loadEvent) int { return int(a.due - b.due) })
	return events
}

// deliveryCheck is the judgement of every subscriber's stream against what it should have got.
type deliveryCheck struct {
	Expected, Delivered int
	// Missing: expected, never arrived. Duplicates: arrived more than once (each extra copy).
	// Unexpected: arrived although not meant for this subscriber. OutOfOrder: a kind 445 whose
	// seq is not above every earlier seq of its group on this subscriber.
	Missing, Duplicates, Unexpected, OutOfOrder int
	// SeqJudged counts the deliveries whose order could be judged (their OK carried a seq).
	SeqJudged int
	Samples   []string
}

// ok reports exactly-once, in-order delivery.
func (d deliveryCheck) ok() bool {
	return d.Missing == 0 && d.Duplicates == 0 && d.Unexpected == 0 && d.OutOfOrder == 0
}

// checkDeliveries judges got (per subscriber, event indices in arrival order) against expect
// (per subscriber, the indices it must receive, each once). seq[i] is event i's seq from its
// OK (0 when none: not a 445 or a relay without seq), group[i] its group (-1 for none); within
// a subscriber, each group's seqs must arrive strictly increasing.
func checkDeliveries(expect, got [][]int32, seq []int64, group []int32, keep int) deliveryCheck {
	var d deliveryCheck
	sample := func(format string, args ...any) {
		if len(d.Samples) < keep {
			d.Samples = append(d.Samples, fmt.Sprintf(format, args...))
		}
	}
	seen := make([]uint16, len(seq))
	wanted := make([]bool, len(seq))
	for s := range max(len(expect), len(got)) {
		var exp, arr []int32
		if s < len(expect) {
			exp = expect[s]
		}
		if s < len(got) {
			arr = got[s]
		}
		d.Expected += len(exp)
		d.Delivered += len(arr)
		for _, i := range exp {
			wanted[i] = true
		}
		last := map[int32]int64{}
		for _, i := range arr {
			seen[i]++
			switch {
			case !wanted[i]:
				if seen[i] == 1 {
					d.Unexpected++
					sample("subscriber %d: event %d not meant for it", s, i)
				} else {
					d.Duplicates++
				}
				continue
			case seen[i] > 1:
				d.Duplicates++
				sample("subscriber %d: event %d arrived %d times", s, i, seen[i])
				continue
			}
			if g := group[i]; g >= 0 && seq[i] > 0 {
				d.SeqJudged++
				if seq[i] <= last[g] {
					d.OutOfOrder++
					sample("subscriber %d: group %d seq %d after seq %d", s, g, seq[i], last[g])
				}
				last[g] = max(last[g], seq[i])
			}
		}
		for _, i := range exp {
			if seen[i] == 0 {
				d.Missing++
				sample("subscriber %d: event %d never arrived", s, i)
			}
			wanted[i] = false
		}
		for _, i := range arr {
			seen[i] = 0
		}
	}
	return d
}

// MarmotRow is one target's line in a marmot load table.
type MarmotRow struct {
	Name   string
	Result MarmotResult
}

// MarmotGoal is the bound on OK and delivery p99 under this load.
const MarmotGoal = 50 * time.Millisecond

// MarmotTable writes the rows as an aligned table followed by a verdict line per row.
func MarmotTable(w io.Writer, rows []MarmotRow) error {
	width := len("target")
	for _, r := range rows {
		width = max(width, len(r.Name))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-*s\tsubs\taddrs\tsetup s\t445/1059/30443 sent\tOK false\tno OK\tsent/s\tlag p99 ms\tOK p50 ms\tOK p99 ms\tOK max ms\tdeliveries\tdel p50 ms\tdel p99 ms\tdel max ms\tmissing\tdup\tunexpected\tout of order\tseq judged\tdropped\t\n", width, "target")
	for _, r := range rows {
		res := r.Result
		d := res.Deliveries
		fmt.Fprintf(tw, "%-*s\t%d\t%d\t%.1f\t%d/%d/%d\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t\n",
			width, r.Name, res.Subscribers, res.Addresses, res.SetupTime.Seconds(),
			res.Offered[classGroup], res.Offered[classWrap], res.Offered[classKP], res.Refused, res.Unanswered, res.SentPerSec,
			millis(res.LagP99), millis(res.OKP50), millis(res.OKP99), millis(res.OKMax),
			d.Delivered, millis(res.DelP50), millis(res.DelP99), millis(res.DelMax),
			d.Missing, d.Duplicates, d.Unexpected, d.OutOfOrder, d.SeqJudged, res.Dropped)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("bench: write table: %w", err)
	}
	for _, r := range rows {
		res := r.Result
		for _, s := range res.RefusedSamples {
			fmt.Fprintf(w, "%s OK false: %s\n", r.Name, s)
		}
		for _, s := range res.Deliveries.Samples {
			fmt.Fprintf(w, "%s delivery: %s\n", r.Name, s)
		}
		for _, s := range res.DroppedSamples {
			fmt.Fprintf(w, "%s dropped: %s\n", r.Name, s)
		}
	}
	for _, r := range rows {
		fmt.Fprintln(w, r.Verdict())
	}
	return nil
}

// Verdict is the row's one-line judgement against the goals.
func (r MarmotRow) Verdict() string {
	res := r.Result
	d := res.Deliveries
	latency := res.OKP99 <= MarmotGoal && res.DelP99 <= MarmotGoal
	order := "in seq order"
	switch {
	case d.SeqJudged == 0:
		order = "order not judged (no seq in OKs)"
	case d.OutOfOrder > 0:
		order = fmt.Sprintf("%d out of seq order", d.OutOfOrder)
	}
	once := "every delivery exactly once"
	if d.Missing+d.Duplicates+d.Unexpected > 0 || res.Dropped > 0 {
		once = fmt.Sprintf("NOT exactly once (%d missing, %d duplicated, %d unexpected, %d subscribers dropped)",
			d.Missing, d.Duplicates, d.Unexpected, res.Dropped)
	}
	if res.Unanswered > 0 {
		once = fmt.Sprintf("%d events never answered; ", res.Unanswered) + once
	}
	return fmt.Sprintf("%s: OK p99 %s ms, delivery p99 %s ms at %.0f events/s offered; goal <= %s: %s; %s, %s",
		r.Name, millis(res.OKP99), millis(res.DelP99), res.SentPerSec, MarmotGoal,
		MetOrNot(latency && res.Refused == 0 && res.Unanswered == 0), once, order)
}

// Passed reports whether the run delivered exactly once, in order, with nothing refused or dropped.
// Latency is the goal, not correctness: events still unanswered after OKTimeout count against
// the goal (Verdict), not here.
func (r MarmotResult) Passed() bool {
	return r.Deliveries.ok() && r.Refused == 0 && r.Dropped == 0
}

// Problems describes what made Passed false.
func (r MarmotResult) Problems() string {
	d := r.Deliveries
	return fmt.Sprintf("%d refused, %d deliveries missing, %d duplicated, %d unexpected, %d out of seq order, %d subscribers dropped",
		r.Refused, d.Missing, d.Duplicates, d.Unexpected, d.OutOfOrder, r.Dropped)
}

// MetOrNot words a goal's verdict for the benchmark's reports.
func MetOrNot(met bool) string {
	if met {
		return "met"
	}
	return "NOT met"
}
