package ordering

import (
	"context"
	"hash/maphash"
	"iter"
	"log/slog"
	"sync"
	"time"

	"github.com/burrow-relay/burrow/policy"
	"github.com/burrow-relay/burrow/server"
	"github.com/burrow-relay/burrow/storage"
	"github.com/prometheus/client_golang/prometheus"
)

// GroupLog is what the fan-out reads from storage to fill gaps
// (storage.Store implements it).
type GroupLog interface {
	GroupLog(ctx context.Context, h string, after int64, limit int) iter.Seq2[storage.Sequenced, error]
	LastSeq(ctx context.Context, h string) (int64, error)
}

// FanoutConfig configures a Fanout.
type FanoutConfig struct {
	// Log fills gaps from storage.
	Log GroupLog
	// Publish, if set, carries this instance's events to the others (the
	// Redis bus), with their seq (0 for events outside any group's log)
	// and release marks; it must not block.
	Publish func(d server.Delivery)
	// GapWait is how long an event waits for a missing lower seq of its
	// group before the gap is filled from storage (default 50ms).
	GapWait time.Duration
	// IdleAfter is how long a group's position is remembered after its last
	// event when no subscription watches it (default 10 minutes).
	IdleAfter time.Duration
	// Logger (default slog.Default()) and Registry (optional) for metrics.
	Logger   *slog.Logger
	Registry prometheus.Registerer
}

// Fanout is the ordered live fan-out, a server.Broadcaster installed with
// server.Config.BroadcastVia. Each group's kind 445 events reach local
// subscribers in seq order whichever connection or instance they came
// through: an event above the next expected seq waits (GapWait) for the
// missing ones, which normally are a few microseconds behind on another
// connection, or a Redis hop behind on another instance; after that the gap
// is read from storage, skipping numbers whose events were deleted. Other
// events pass straight through. Events committed here are also published
// to the other instances (FanoutConfig.Publish), in the order delivered.
type Fanout struct {
	local   server.Broadcaster
	cfg     FanoutConfig
	seed    maphash.Seed
	shards  [64]shard
	metrics fanoutMetrics

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type shard struct {
	mu     sync.Mutex
	groups map[string]*groupState
	// watched counts, per group, the subscriptions that rely on its
	// position (Watch minus Unwatch); a watched group is never forgotten.
	watched map[string]int
}

// groupState is one group's delivery position.
type groupState struct {
	// floor is where this instance started following the group: events
	// below it were committed before and never delivered from this state.
	floor     int64
	lateSent  map[int64]bool    // seqs below floor delivered late
	next      int64             // the seq delivered next
	held      map[int64]pending // events above next, waiting
	filling   bool              // a gap fill is running or scheduled
	lastTouch time.Time
}

type pending struct {
	d     server.Delivery
	local bool // committed by this instance: publish when delivered
}

type fanoutMetrics struct {
	fills, fillFailures, stale, late, remote prometheus.Counter
}

// maxHeld bounds one group's waiting events; past it the gap is given up
// and the waiting events are delivered (only a storage outage gets there).
const maxHeld = 50000

// NewFanout wraps local. Close stops its background work.
func NewFanout(local server.Broadcaster, cfg FanoutConfig) (*Fanout, error) {
	if cfg.GapWait <= 0 {
		cfg.GapWait = 50 * time.Millisecond
	}
	if cfg.IdleAfter <= 0 {
		cfg.IdleAfter = 10 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	f := &Fanout{local: local, cfg: cfg, seed: maphash.MakeSeed()}
	for i := range f.shards {
		f.shards[i].groups = make(map[string]*groupState)
		f.shards[i].watched = make(map[string]int)
	}
	newCounter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	f.metrics = fanoutMetrics{
		fills:        newCounter("burrow_group_gap_fills_total", "Group sequence gaps filled from storage."),
		fillFailures: newCounter("burrow_group_gap_fill_failures_total", "Gap fills that could not read storage (retried)."),
		stale:        newCounter("burrow_group_stale_deliveries_total", "Group events dropped because their seq was already delivered."),
		late:         newCounter("burrow_group_late_deliveries_total", "Group events delivered out of order: committed just before this instance began following their group."),
		remote:       newCounter("burrow_group_remote_events_total", "Events received from other instances."),
	}
	if cfg.Registry != nil {
		for _, c := range []prometheus.Collector{f.metrics.fills, f.metrics.fillFailures, f.metrics.stale, f.metrics.late, f.metrics.remote} {
			if err := cfg.Registry.Register(c); err != nil {
				return nil, err
			}
		}
	}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.wg.Add(1)
	go f.forgetIdle()
	return f, nil
}

// Close stops gap fills and the idle sweep.
func (f *Fanout) Close() {
	f.cancel()
	f.wg.Wait()
}

// Broadcast takes an event committed (or relayed) by this instance.
func (f *Fanout) Broadcast(d server.Delivery) {
	h, ok := sequenced(d)
	if !ok {
		f.local.Broadcast(d)
		f.publish(d)
		return
	}
	f.submit(h, pending{d: d, local: true})
}

// Remote takes an event another instance committed (from the bus); its
// Ticket is ignored.
func (f *Fanout) Remote(d server.Delivery) {
	f.metrics.remote.Inc()
	d.Ticket = 0
	h, ok := sequenced(d)
	if !ok {
		f.local.Broadcast(d)
		return
	}
	f.submit(h, pending{d: d})
}

// Watch makes sure group h's position is known before a subscription that
// relies on live delivery of h runs its stored query: the position starts
// after the last seq assigned now, all of which the query will see. The
// position is then kept, however long the group is idle, until Unwatch is
// called as many times as Watch: forgetting it while a subscription relies
// on it would let a later event overtake an earlier one (a remote seq 3
// arriving before a local seq 2 would start a fresh position at 3).
func (f *Fanout) Watch(ctx context.Context, h string) {
	sh := f.shard(h)
	sh.mu.Lock()
	sh.watched[h]++
	g := sh.groups[h]
	if g != nil {
		g.lastTouch = time.Now()
	}
	sh.mu.Unlock()
	if g != nil {
		return
	}
	last, err := f.cfg.Log.LastSeq(ctx, h)
	if err != nil {
		f.cfg.Logger.Warn("reading a group's last seq", "err", err)
		return
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.groups[h] == nil {
		sh.groups[h] = &groupState{floor: last + 1, next: last + 1, lastTouch: time.Now()}
	}
}

// Resync reads every known group's log past its position, for events the
// bus could not carry (Redis was down or its queue full). Call it when the
// bus reconnects. The groups are read one after another, so a reconnect
// with many known groups does not open a query per group at once.
func (f *Fanout) Resync() {
	var hs []string
	for i := range f.shards {
		sh := &f.shards[i]
		sh.mu.Lock()
		for h, g := range sh.groups {
			if !g.filling {
				g.filling = true // a fill is scheduled: gaps found meanwhile wait for it
				hs = append(hs, h)
			}
		}
		sh.mu.Unlock()
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for _, h := range hs {
			if f.ctx.Err() != nil {
				return
			}
			f.fill(h)
		}
	}()
}

// Unwatch ends one Watch of h, when the subscription that watched it
// ends.
func (f *Fanout) Unwatch(h string) {
	sh := f.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.watched[h] <= 1 {
		delete(sh.watched, h)
		return
	}
	sh.watched[h]--
}

func sequenced(d server.Delivery) (string, bool) {
	if d.Seq <= 0 || d.Event.Kind != policy.KindGroupEvent {
		return "", false
	}
	h := d.Event.Tags.GetFirst([]string{"h", ""})
	if h == nil {
		return "", false
	}
	return (*h)[1], true
}

func (f *Fanout) shard(h string) *shard {
	return &f.shards[maphash.String(f.seed, h)%uint64(len(f.shards))]
}

func (f *Fanout) submit(h string, p pending) {
	sh := f.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	g := sh.groups[h]
	if g == nil {
		// First event of a group nobody here watches: start from it.
		g = &groupState{floor: p.d.Seq, next: p.d.Seq}
		sh.groups[h] = g
	}
	g.lastTouch = time.Now()
	switch seq := p.d.Seq; {
	case seq < g.floor && !g.lateSent[seq]:
		// Committed before this instance began following the group (its
		// broadcast was in flight then) and never delivered from this
		// state: deliver it late rather than lose it. Subscriptions whose
		// stored query already returned it drop the copy (by id, or by
		// seq for ordered reads); only one that predates the group's state
		// here sees it out of order.
		f.metrics.late.Inc()
		if g.lateSent == nil {
			g.lateSent = make(map[int64]bool)
		}
		g.lateSent[seq] = true // only broadcasts in flight at the start: few
		f.local.Broadcast(p.d)
		if p.local {
			f.publish(p.d)
		}
	case seq < g.next:
		// Delivered already: by a gap fill that read it from storage before
		// its own broadcast came, or twice by the bus. Other instances may
		// not have it yet.
		f.metrics.stale.Inc()
		if p.local {
			f.publish(p.d)
		}
	case seq == g.next:
		f.deliverLocked(g, p)
		f.drainLocked(g)
	default:
		if g.held == nil {
			g.held = make(map[int64]pending)
		}
		g.held[seq] = p
		if len(g.held) > maxHeld {
			f.skipGapLocked(g)
			return
		}
		f.startFillLocked(h, g, f.cfg.GapWait)
	}
}

func (f *Fanout) deliverLocked(g *groupState, p pending) {
	f.local.Broadcast(p.d)
	g.next = p.d.Seq + 1
	if p.local {
		f.publish(p.d)
	}
}

// drainLocked delivers the waiting events that have become next.
func (f *Fanout) drainLocked(g *groupState) {
	for {
		p, ok := g.held[g.next]
		if !ok {
			return
		}
		delete(g.held, g.next)
		f.deliverLocked(g, p)
	}
}

// skipGapLocked gives up on the gap below the lowest waiting event.
func (f *Fanout) skipGapLocked(g *groupState) {
	lowest := int64(-1)
	for seq := range g.held {
		if lowest < 0 || seq < lowest {
			lowest = seq
		}
	}
	if lowest > g.next {
		f.cfg.Logger.Warn("giving up on a group sequence gap", "from", g.next, "to", lowest-1)
		g.next = lowest
	}
	f.drainLocked(g)
}

// startFillLocked schedules a gap fill for h after wait, unless one is on.
func (f *Fanout) startFillLocked(h string, g *groupState, wait time.Duration) {
	if g.filling {
		return
	}
	g.filling = true
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		if wait > 0 {
			t := time.NewTimer(wait)
			defer t.Stop()
			select {
			case <-f.ctx.Done():
				return
			case <-t.C:
			}
		}
		f.fill(h)
	}()
}

// fill reads h's log from its position up to the highest waiting event
// (all of it, for a resync) and delivers in seq order, merging what waits;
// numbers missing from the log are holes left by deletion and are skipped.
func (f *Fanout) fill(h string) {
	sh := f.shard(h)
	sh.mu.Lock()
	g := sh.groups[h]
	if g == nil {
		sh.mu.Unlock()
		return
	}
	from := g.next
	upTo := int64(0) // 0: read to the end
	for seq := range g.held {
		upTo = max(upTo, seq)
	}
	sh.mu.Unlock()

	limit := 0
	if upTo > 0 {
		if upTo <= from {
			limit = -1 // nothing missing any more
		} else {
			limit = int(upTo - from)
		}
	}
	var got []storage.Sequenced
	var err error
	if limit >= 0 {
		for item, e := range f.cfg.Log.GroupLog(f.ctx, h, from-1, limit) {
			if e != nil {
				err = e
				break
			}
			got = append(got, item)
		}
	}

	sh.mu.Lock()
	defer sh.mu.Unlock()
	g.filling = false
	if err != nil {
		if f.ctx.Err() != nil {
			return
		}
		f.metrics.fillFailures.Inc()
		f.cfg.Logger.Warn("filling a group sequence gap from storage", "err", err)
		if len(g.held) > 0 {
			f.startFillLocked(h, g, time.Second)
		}
		return
	}
	f.metrics.fills.Inc()
	for _, item := range got {
		if upTo > 0 && item.Seq > upTo {
			break // not waited for: its own broadcast is on the way
		}
		if item.Seq < g.next {
			continue // delivered meanwhile
		}
		p, ok := g.held[item.Seq]
		if ok {
			delete(g.held, item.Seq)
		} else {
			p = pending{d: server.Delivery{Event: item.Event, Seq: item.Seq, Releases: item.Releases}}
		}
		f.deliverLocked(g, p)
		f.drainLocked(g)
	}
	if upTo > 0 && g.next < upTo {
		// Whatever is still missing below the waiting events was deleted.
		g.next = upTo
	}
	f.drainLocked(g)
	if len(g.held) > 0 {
		f.startFillLocked(h, g, f.cfg.GapWait)
	}
}

// publish carries d to the other instances, without this instance's
// ticket. An event outside a group's log goes with seq 0.
func (f *Fanout) publish(d server.Delivery) {
	if f.cfg.Publish != nil {
		if _, ok := sequenced(d); !ok {
			d.Seq = 0
		}
		d.Ticket = 0
		f.cfg.Publish(d)
	}
}

// forgetIdle drops the positions of groups idle for IdleAfter that no
// subscription watches; a group that comes back starts from its next event
// (or from Watch).
func (f *Fanout) forgetIdle() {
	defer f.wg.Done()
	t := time.NewTicker(min(f.cfg.IdleAfter, time.Minute))
	defer t.Stop()
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-t.C:
		}
		cutoff := time.Now().Add(-f.cfg.IdleAfter)
		for i := range f.shards {
			sh := &f.shards[i]
			sh.mu.Lock()
			for h, g := range sh.groups {
				if len(g.held) == 0 && !g.filling && g.lastTouch.Before(cutoff) && sh.watched[h] == 0 {
					delete(sh.groups, h)
				}
			}
			sh.mu.Unlock()
		}
	}
}
