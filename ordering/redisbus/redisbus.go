// Package redisbus owns the live fan-out of accepted events between relay
// instances over one Redis stream per deployment (DESIGN.md "Sequencing":
// Redis carries (h, seq, event) between instances; the database stays the
// truth).
//
// Trust: Redis must be dedicated to the deployment and trusted with its
// traffic, but the bus does not take its word for anything. Every frame
// carries an HMAC-SHA256 under a key only the deployment's instances hold
// (cmd/relay keeps it in the database they share, storage.Secrets), and a
// frame whose MAC does not verify (forged, altered, or another
// deployment's on the same Redis) is never delivered; it is counted
// (Rejected). Each deployment has a stream of its own (Config.Stream).
//
// Loss: a frame is written to the stream with XADD and read by every other
// instance with XREAD from the last entry it read, so a receiver that
// loses Redis for a while reads on from where it stopped when it is back,
// and a sender keeps what it could not write and writes it when Redis
// answers again. The stream keeps Config.Retention of frames (older ones
// are trimmed by id, which is a time). Only two things lose a frame: the
// sender's queue overflowing (QueueSize frames or QueueBytes bytes; while
// Redis is unreachable frames wait there), and a receiver away longer
// than Retention. Neither is silent: the sender counts what it dropped
// (Dropped), and every frame carries its sender's frame number, so a
// receiver that sees a sender's numbers jump counts the frames it missed
// (Missed) and calls the OnLoss hooks, which refill group events from
// storage. A sender that goes quiet after a loss still reveals it: while
// it has written frames, it writes a heartbeat (a frame with only its
// number) every second.
//
// Wire format, one stream entry per frame, field "f" (binary, so no second
// JSON layer around the event):
//
//	byte 0      format version, 3
//	byte 1      frame type: 0 event, 1 heartbeat
//	bytes 2..9  sender instance id (random per Bus, so own frames are skipped)
//	uvarint     frame number: 1, 2, 3 ... per sender
//	event frames only:
//	  uvarint   seq (group seq of a stored kind 445, else 0)
//	  uvarint   seq of the Commit this one released (commit slots), else 0;
//	            when not 0, followed by that Commit's 32-byte id
//	  bytes     the event as NIP-01 JSON
//	32 bytes    HMAC-SHA256 of everything before, under the deployment's key
//
// Versions 1 and 2 (pub/sub, no MAC, no frame number; version 1 without
// the release field) still decode, but being unauthenticated they are
// never delivered: upgrade every instance of a deployment together.
// Decoding rejects anything else: unknown version or type, short frame,
// bad varint, seq above int64, event JSON that does not parse or whose id,
// pubkey or sig is not lowercase hex of the right length, or whose id does
// not match its content. Signatures are not re-verified: the MAC shows the
// frame comes from an instance of the deployment, which verified them
// before storing.
package redisbus

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/redis/go-redis/v9"

	"github.com/burrow-relay/burrow/storage"
)

// Message is one event crossing instances.
type Message struct {
	Event *nostr.Event
	// Seq is the group seq for a stored kind 445 (its h is the event's
	// single h tag), else 0.
	Seq int64
	// Releases names the Commit this one released through a commit-slot
	// release claim, or is nil.
	Releases *storage.Release
	// Deleted, in a message without Event, lists events the sending
	// instance deleted, so that the others drop copies they still have
	// queued for subscribers (at most MaxDeletedPerMessage).
	Deleted []string
}

// MaxDeletedPerMessage bounds the ids of one deletion notice; Publish
// splits longer lists.
const MaxDeletedPerMessage = 4096

// Config configures a Bus.
type Config struct {
	Client *redis.Client
	// Stream is the Redis stream key: the same for every instance of a
	// deployment and for no other deployment (default DefaultStream).
	Stream string
	// Key authenticates frames: every instance of the deployment must have
	// the same, and nobody else. At least 16 bytes; required.
	Key []byte
	// Retention is how long frames stay in the stream for a receiver that
	// fell behind (default DefaultRetention). Redis holds about this much
	// of the deployment's traffic.
	Retention time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// QueueSize bounds the outgoing buffer in frames (default 8192) and
	// QueueBytes in encoded bytes (default 64 MiB: group events may be
	// hundreds of KiB each). Frames wait there while Redis is unreachable;
	// when either bound is reached, Publish drops the message (counted by
	// Dropped).
	QueueSize  int
	QueueBytes int64
}

const (
	// DefaultStream is Config.Stream's default.
	DefaultStream = "burrow:bus"
	// DefaultRetention is Config.Retention's default.
	DefaultRetention = time.Minute
	// DefaultQueueSize is Config.QueueSize's default.
	DefaultQueueSize = 8192
	// DefaultQueueBytes is Config.QueueBytes's default.
	DefaultQueueBytes = 64 << 20

	frameVersion   = 3 // what encode writes
	frameVersionV2 = 2 // still decoded: pub/sub, no MAC
	frameVersionV1 = 1 // still decoded: no release field either
	idLen          = 8
	minKeyLen      = 16

	// maxBatch caps frames per XADD pipeline, and readBatch per XREAD, so
	// one round trip's request and reply stay small (a frame may be a few
	// hundred KiB).
	maxBatch  = 256
	readBatch = 32
	// opTimeout bounds one write attempt.
	opTimeout = 5 * time.Second
	// minBackoff and maxBackoff bound the wait between attempts while
	// Redis is unreachable.
	minBackoff = 50 * time.Millisecond
	maxBackoff = 5 * time.Second
	// readBlock is how long one XREAD waits for new frames. Run notices
	// the end of its context between reads, so it also bounds how long
	// Run takes to return.
	readBlock = time.Second
	// beatEvery is how often a sender that wrote frames writes a
	// heartbeat.
	beatEvery = time.Second
	// senderTTL is how long a receiver remembers a silent sender's last
	// frame number.
	senderTTL = time.Hour
)

// Bus publishes this instance's events and delivers other instances' events.
type Bus struct {
	client    *redis.Client
	stream    string
	key       []byte
	retention time.Duration
	log       *slog.Logger
	id        [idLen]byte

	// num is the last frame number given out; queue holds encoded frames
	// in number order.
	numMu       sync.Mutex
	num         uint64
	queue       chan []byte
	queuedBytes atomic.Int64
	maxQueued   int64

	dropped, rejected, missed atomic.Uint64
	subscribed                atomic.Bool
	pubDown                   atomic.Bool
	outage                    atomic.Bool // shared by both directions so one outage logs once
	running                   atomic.Bool

	hookMu sync.Mutex
	hooks  []func()

	ctx       context.Context // ends on Close; bounds the publisher's writes
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
	if len(cfg.Key) < minKeyLen {
		return nil, fmt.Errorf("redisbus: Config.Key must be at least %d bytes", minKeyLen)
	}
	if cfg.Stream == "" {
		cfg.Stream = DefaultStream
	}
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
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
		stream:    cfg.Stream,
		key:       append([]byte(nil), cfg.Key...),
		retention: cfg.Retention,
		log:       cfg.Logger.With("component", "redisbus", "stream", cfg.Stream),
		queue:     make(chan []byte, cfg.QueueSize),
		maxQueued: cfg.QueueBytes,
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

// OnLoss registers f to be called, from Run's goroutine, each time frames
// of another instance are found lost (its frame numbers jumped, past what
// the stream kept or its queue held), and each time the stream is read
// again after Run could not read it at first. f should start a refill of
// group events from storage; it should not block for long.
func (b *Bus) OnLoss(f func()) {
	b.hookMu.Lock()
	defer b.hookMu.Unlock()
	b.hooks = append(b.hooks, f)
}

// Publish enqueues m for the other instances without ever blocking; when the
// queue is full or the Bus is closed, m is dropped and counted. Its frame
// number is taken either way, so receivers learn of a drop.
func (b *Bus) Publish(m Message) {
	if (m.Event == nil) == (len(m.Deleted) == 0) || b.ctx.Err() != nil {
		b.dropped.Add(1)
		return
	}
	if m.Event == nil {
		for ids := range slices.Chunk(m.Deleted, MaxDeletedPerMessage) {
			b.publish(func(num uint64) ([]byte, error) { return encodeDeletions(b.key, b.id, num, ids) })
		}
		return
	}
	b.publish(func(num uint64) ([]byte, error) { return encodeEvent(b.key, b.id, num, m) })
}

// publish numbers and queues the frame encode builds.
func (b *Bus) publish(encode func(num uint64) ([]byte, error)) {
	b.numMu.Lock()
	defer b.numMu.Unlock()
	frame, err := encode(b.num + 1)
	if err != nil {
		b.dropped.Add(1)
		return
	}
	b.num++
	b.enqueueLocked(frame)
}

// enqueueLocked queues frame, or drops and counts it; numMu is held, so
// frames queue in number order.
func (b *Bus) enqueueLocked(frame []byte) bool {
	n := int64(len(frame))
	if b.queuedBytes.Add(n) > b.maxQueued {
		b.queuedBytes.Add(-n)
		b.dropped.Add(1)
		return false
	}
	select {
	case b.queue <- frame:
		return true
	default:
		b.queuedBytes.Add(-n)
		b.dropped.Add(1)
		return false
	}
}

// beat queues a heartbeat if frames were numbered since the last one
// queued (lastBeat), and returns the number of the last one queued.
func (b *Bus) beat(lastBeat uint64) uint64 {
	b.numMu.Lock()
	defer b.numMu.Unlock()
	if b.num == lastBeat {
		return lastBeat
	}
	b.num++
	if !b.enqueueLocked(encodeBeat(b.key, b.id, b.num)) {
		return lastBeat // try again at the next tick
	}
	return b.num
}

// Dropped counts messages this instance did not write: queue full,
// published after Close, a nil Event, or still queued at Close.
func (b *Bus) Dropped() uint64 { return b.dropped.Load() }

// Rejected counts stream entries never delivered because they could not be
// authenticated or decoded.
func (b *Bus) Rejected() uint64 { return b.rejected.Load() }

// Missed counts frames of other instances this one never received.
func (b *Bus) Missed() uint64 { return b.missed.Load() }

// QueuedBytes is the size of the frames waiting to be written to the
// stream: near zero while Redis keeps up, growing while it is slow or
// away (Publish drops past Config.QueueBytes).
func (b *Bus) QueuedBytes() int64 { return b.queuedBytes.Load() }

// Connected reports whether Run is reading the stream and the publisher
// has not failed since (always false without Run).
func (b *Bus) Connected() bool { return b.subscribed.Load() && !b.pubDown.Load() }

// Close stops the publisher and waits for it. Frames still queued are
// dropped (and counted). Run stops with its own context. Close is
// idempotent.
func (b *Bus) Close() error {
	b.closeOnce.Do(b.cancel)
	<-b.pubDone
	return nil
}

// outageBegins logs the first failure of an outage, whichever direction
// sees it first. The error text names the connection problem, never event
// data.
func (b *Bus) outageBegins(side string, err error) {
	if b.outage.CompareAndSwap(false, true) {
		b.log.Warn("redisbus: Redis unreachable; cross-instance live delivery paused, frames wait in the queue and the stream",
			"side", side, "err", err)
	}
}

// outageEnds logs the end of an outage once.
func (b *Bus) outageEnds(side string) {
	if b.outage.CompareAndSwap(true, false) {
		b.log.Info("redisbus: Redis reachable again", "side", side)
	}
}

func (b *Bus) fireLoss() {
	b.hookMu.Lock()
	hooks := append([]func(){}, b.hooks...)
	b.hookMu.Unlock()
	for _, f := range hooks {
		f()
	}
}
