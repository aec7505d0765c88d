// Package redisbus owns the live fan-out of accepted events between relay
// instances over one Redis pub/sub channel (DESIGN.md "Sequencing": Redis
// carries (h, seq, event) between instances; PostgreSQL stays the truth).
//
// Delivery is best effort by design. Publish never blocks the caller: it
// enqueues a frame in a bounded queue, and one background goroutine sends
// it, pipelining many PUBLISH commands per round trip when a backlog exists.
// A message is dropped (and counted by Dropped) when the queue is full, when
// Redis is down, or when its send fails. That is acceptable because a
// receiver that sees a gap in a group's seq refills from PostgreSQL by seq,
// and OnReconnect tells the caller when a subscription came back after an
// outage so it can refill what the outage hid. Redis down therefore delays
// cross-instance live delivery and never stops storage or sequencing.
//
// Wire format, one Redis message per event (binary, so no second JSON
// layer around the event):
//
//	byte 0      format version, 1
//	bytes 1..8  sender instance id (random per Bus, so own messages are skipped)
//	uvarint     seq (group seq of a stored kind 445, else 0)
//	rest        the event as NIP-01 JSON
//
// Decoding rejects anything else: unknown version, short frame, bad varint,
// seq above int64, event JSON that does not parse or whose id, pubkey or sig
// is not lowercase hex of the right length, or whose id does not match its
// content. Signatures are not re-verified: the sending instance verified
// them before storing, and the channel is private to the deployment.
package redisbus

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/redis/go-redis/v9"
)

// Message is one event crossing instances.
type Message struct {
	Event *nostr.Event
	// Seq is the group seq for a stored kind 445 (its h is the event's
	// single h tag), else 0.
	Seq int64
}

// Config configures a Bus.
type Config struct {
	Client *redis.Client
	// Channel is the pub/sub channel; default "burrow:events".
	Channel string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// QueueSize bounds the outgoing buffer in messages (default 8192) and
	// QueueBytes in encoded bytes (default 64 MiB: group events may be
	// hundreds of KiB each). When either is reached, Publish drops the
	// message (counted by Dropped).
	QueueSize  int
	QueueBytes int64
}

const (
	// DefaultChannel is Config.Channel's default.
	DefaultChannel = "burrow:events"
	// DefaultQueueSize is Config.QueueSize's default.
	DefaultQueueSize = 8192
	// DefaultQueueBytes is Config.QueueBytes's default.
	DefaultQueueBytes = 64 << 20

	frameVersion = 1
	idLen        = 8

	// maxBatch caps PUBLISH commands per pipeline round trip, so one
	// round trip's reply stays small.
	maxBatch = 256
	// opTimeout bounds one send or subscribe attempt.
	opTimeout = 5 * time.Second
	// minBackoff and maxBackoff bound the wait between attempts while
	// Redis is unreachable.
	minBackoff = 50 * time.Millisecond
	maxBackoff = 5 * time.Second
	// healthEvery is how long the subscriber waits for traffic before it
	// pings, and then for the pong, so a half-open connection is noticed.
	healthEvery = 5 * time.Second
)

// Bus publishes this instance's events and delivers other instances' events.
type Bus struct {
	client  *redis.Client
	channel string
	log     *slog.Logger
	id      [idLen]byte
	queue   chan []byte
	// queuedBytes is the size of the frames in queue; maxQueued bounds it.
	queuedBytes atomic.Int64
	maxQueued   int64
	// wake cuts the publisher's backoff short when the subscriber sees
	// Redis again, so fewer fresh messages are dropped after an outage.
	wake chan struct{}

	dropped    atomic.Uint64
	garbage    atomic.Uint64
	subscribed atomic.Bool
	pubDown    atomic.Bool
	outage     atomic.Bool // shared by both directions so one outage logs once
	running    atomic.Bool

	hookMu sync.Mutex
	hooks  []func()

	ctx       context.Context // ends on Close; bounds the publisher's sends
	cancel    context.CancelFunc
	closeOnce sync.Once
	pubDone   chan struct{}  // closed when the publisher has returned
	wg        sync.WaitGroup // the publisher and a running Run, for tests
}

// New returns a Bus with a random instance id and starts its publisher.
// Call Run to receive and Close to stop.
func New(cfg Config) (*Bus, error) {
	if cfg.Client == nil {
		return nil, errors.New("redisbus: Config.Client is nil")
	}
	if cfg.Channel == "" {
		cfg.Channel = DefaultChannel
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.QueueBytes <= 0 {
		cfg.QueueBytes = DefaultQueueBytes
	}
	b := &Bus{
		client:    cfg.Client,
		channel:   cfg.Channel,
		log:       cfg.Logger.With("component", "redisbus", "channel", cfg.Channel),
		queue:     make(chan []byte, cfg.QueueSize),
		maxQueued: cfg.QueueBytes,
		wake:      make(chan struct{}, 1),
		pubDone:   make(chan struct{}),
	}
	if _, err := rand.Read(b.id[:]); err != nil {
		return nil, fmt.Errorf("redisbus: instance id: %w", err)
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.wg.Add(1)
	go b.publishLoop()
	return b, nil
}

// OnReconnect registers f to be called, from Run's goroutine, each time the
// subscription is established again after it was lost or after Run could
// not subscribe at first; not on a first subscription that succeeds at once.
// Messages published meanwhile were not delivered, so f should start a
// refill from storage; it should not block for long.
func (b *Bus) OnReconnect(f func()) {
	b.hookMu.Lock()
	defer b.hookMu.Unlock()
	b.hooks = append(b.hooks, f)
}

// Publish enqueues m for the other instances without ever blocking; when the
// queue is full or the Bus is closed, m is dropped and counted.
func (b *Bus) Publish(m Message) {
	if m.Event == nil || b.ctx.Err() != nil {
		b.dropped.Add(1)
		return
	}
	frame, err := encode(b.id, m)
	if err != nil {
		b.dropped.Add(1)
		return
	}
	n := int64(len(frame))
	if b.queuedBytes.Add(n) > b.maxQueued {
		b.queuedBytes.Add(-n)
		b.dropped.Add(1)
		return
	}
	select {
	case b.queue <- frame:
	default:
		b.queuedBytes.Add(-n)
		b.dropped.Add(1)
	}
}

// Dropped counts messages not sent: queue full, Redis down, send failed,
// published after Close, or a nil Event.
func (b *Bus) Dropped() uint64 { return b.dropped.Load() }

// Connected reports whether Run's subscription is established and the
// publisher has not failed since (always false without Run).
func (b *Bus) Connected() bool { return b.subscribed.Load() && !b.pubDown.Load() }

// Close stops the publisher and waits for it. Messages still queued are
// dropped. Run stops with its own context. Close is idempotent.
func (b *Bus) Close() error {
	b.closeOnce.Do(b.cancel)
	<-b.pubDone
	return nil
}
