package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/burrow-relay/burrow/policy"
	"github.com/fasthttp/websocket"
)

// conn is one websocket client. Three goroutines serve it: the reader (the
// HTTP handler's goroutine), the committer (EVENTs in arrival order) and the
// writer (drains the outbox).
type conn struct {
	srv        *Server
	ws         *websocket.Conn
	ip         netip.Addr
	group      netip.Addr // ip as per-address limits count it (policy.GroupAddr)
	challenge  string
	serviceURL string
	meter      *policy.ConnMeter

	out  *outbox
	dead chan struct{} // closed by kill
	once sync.Once

	authMu sync.Mutex
	authed string

	// subs and values (the filter values they hold) are touched only by
	// the reader goroutine.
	subs   map[string]*subscription
	values int
	// negs are the open NIP-77 reconciliations.
	negs negSessions

	// pending is the FIFO of EVENTs read but not yet answered; the reader
	// sends, the committer receives in order.
	pending chan *pendingEvent
	// committerIdle is set while the committer waits for the next EVENT;
	// the reader then hands it the verification (enqueueEvent).
	committerIdle atomic.Bool
	// evCtx is the context the committer's events run in (eventContext),
	// for the authenticated pubkey evCtxAuthed; the committer only.
	evCtx         context.Context
	evCtxAuthed   string
	readAhead     readAhead
	committerDone chan struct{}
	writerDone    chan struct{}
}

// pendingEventsPerConn and pendingBytesPerConn bound the EVENTs read ahead
// of their commit on one connection (the bytes counted as read, at least
// one message whatever its size); a client pipelining more is simply read
// more slowly.
const (
	pendingEventsPerConn = 256
	pendingBytesPerConn  = 4 << 20
)

func (s *Server) serveWebsocket(w http.ResponseWriter, r *http.Request) {
	if s.stopping.Load() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	ip := policy.ClientIP(r, s.cfg.TrustedProxies)
	if s.blocklist.Blocked(ip) {
		http.Error(w, "blocked", http.StatusForbidden)
		return
	}
	if !s.takeConnection() {
		s.metrics.refusedConns.WithLabelValues(refusedCapacity).Inc()
		w.Header().Set("Retry-After", "10")
		http.Error(w, "relay at its connection limit, try again later", http.StatusServiceUnavailable)
		return
	}
	defer s.giveConnection()
	group := policy.GroupAddr(ip, s.limits.IPv6PrefixBits)
	if !s.connCount.Take(group, 1) {
		s.metrics.refusedConns.WithLabelValues(refusedPerAddress).Inc()
		http.Error(w, "too many connections from your address", http.StatusTooManyRequests)
		return
	}
	defer s.connCount.Give(group, 1)

	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		// The upgrader has answered the client already.
		s.log.Debug("websocket upgrade failed", "err", err)
		return
	}
	c := &conn{
		srv:           s,
		ws:            ws,
		ip:            ip,
		group:         group,
		challenge:     newChallenge(),
		serviceURL:    s.serviceURL(r),
		meter:         s.meter.Conn(group),
		dead:          make(chan struct{}),
		subs:          make(map[string]*subscription),
		negs:          negSessions{m: make(map[string]*negSession)},
		pending:       make(chan *pendingEvent, pendingEventsPerConn),
		committerDone: make(chan struct{}),
		writerDone:    make(chan struct{}),
	}
	c.out = newOutbox(s.limits.OutboundQueue, s.limits.OutboundBytes, s.outBytes, c.dead)
	c.readAhead.init(pendingBytesPerConn, c.dead)

	s.conns.mu.Lock()
	if s.stopping.Load() {
		s.conns.mu.Unlock()
		_ = ws.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseGoingAway, "shutting down"),
			time.Now().Add(time.Second))
		_ = ws.Close()
		return
	}
	// A block made during the upgrade ended the connections registered
	// then (closeConnsFrom, under this lock); this one is refused here.
	if s.blocklist.Blocked(ip) {
		s.conns.mu.Unlock()
		_ = ws.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.ClosePolicyViolation, "address blocked"),
			time.Now().Add(time.Second))
		_ = ws.Close()
		return
	}
	s.conns.m[c] = struct{}{}
	s.conns.wg.Add(1)
	s.conns.mu.Unlock()
	s.metrics.openConns.Inc()
	defer func() {
		s.conns.mu.Lock()
		delete(s.conns.m, c)
		s.conns.mu.Unlock()
		s.metrics.openConns.Dec()
		s.conns.wg.Done()
	}()

	go c.writeLoop()
	go c.commitLoop()
	// NIP-42: the challenge goes out at once, so clients can AUTH before
	// anything needs it.
	c.out.pushLive(plainMsg(encodeAuthChallenge(c.challenge)))

	c.readLoop()
	c.finish()
}

func newChallenge() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// serviceURL is the URL AUTH events must name.
func (s *Server) serviceURL(r *http.Request) string {
	if s.cfg.ServiceURL != "" {
		return s.cfg.ServiceURL
	}
	if r.TLS != nil {
		return "wss://" + r.Host
	}
	return "ws://" + r.Host
}

func (c *conn) authedPubKey() string {
	c.authMu.Lock()
	defer c.authMu.Unlock()
	return c.authed
}

func (c *conn) setAuthed(pk string) {
	c.authMu.Lock()
	c.authed = pk
	c.authMu.Unlock()
}

// readLoop reads messages until the peer goes away, the connection is
// killed or the server stops.
func (c *conn) readLoop() {
	limit := c.srv.limits.MaxMessageLength
	// Messages up to hardLimit are read and refused politely (the connection
	// stays usable); beyond it the websocket library drops the connection.
	hardLimit := int64(limit)*8 + 1<<20
	c.ws.SetReadLimit(hardLimit)
	c.extendReadDeadline()
	c.ws.SetPongHandler(func(string) error { c.extendReadDeadline(); return nil })

	buf := make([]byte, 0, 4096)
	for {
		typ, rd, err := c.ws.NextReader()
		if err != nil {
			c.logReadEnd(err)
			return
		}
		c.extendReadDeadline()
		buf, err = readCapped(rd, buf[:0], limit)
		if err != nil {
			c.logReadEnd(err)
			return
		}
		select {
		case <-c.dead:
			// Killed meanwhile: what the library still holds buffered is
			// not worth a query.
			return
		default:
		}
		oversize := len(buf) > limit
		if !oversize && typ != websocket.TextMessage {
			c.notice("invalid: only text messages are understood")
			continue
		}
		c.handleMessage(buf, oversize)
		// A REQ streams its stored events from this goroutine; restart the
		// idle clock so a long one does not count as silence.
		c.extendReadDeadline()
		if cap(buf) > 64<<10 {
			buf = make([]byte, 0, 4096) // do not pin a large buffer per idle connection
		}
	}
}

// readCapped reads a message into buf keeping at most limit+1 bytes and
// discarding the rest. It reads straight into buf's spare capacity (growing
// it up to limit+1) rather than through io.Copy, which would allocate and
// zero a 32 KiB transfer buffer for every message.
func readCapped(rd io.Reader, buf []byte, limit int) ([]byte, error) {
	keep := limit + 1
	var discard []byte // allocated only for a message beyond keep
	for {
		var dst []byte
		if len(buf) < keep {
			if len(buf) == cap(buf) {
				buf = slices.Grow(buf, min(max(cap(buf), 512), keep-len(buf)))
			}
			dst = buf[len(buf):min(cap(buf), keep)]
		} else {
			if discard == nil {
				discard = make([]byte, 4096)
			}
			dst = discard
		}
		n, err := rd.Read(dst)
		if len(buf) < keep {
			buf = buf[:len(buf)+n]
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

func (c *conn) extendReadDeadline() {
	_ = c.ws.SetReadDeadline(time.Now().Add(c.srv.limits.PongTimeout))
	// Shutdown may have set a past deadline between our read and the line
	// above; restore it so the reader still stops.
	if c.srv.stopping.Load() {
		_ = c.ws.SetReadDeadline(time.Now())
	}
}

// stopReading makes the reader stop after the message in hand (Shutdown).
func (c *conn) stopReading() {
	_ = c.ws.SetReadDeadline(time.Now())
}

func (c *conn) logReadEnd(err error) {
	if c.srv.stopping.Load() || errors.Is(err, errConnClosed) ||
		websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived) {
		return
	}
	c.srv.log.Debug("websocket read ended", "ip", c.ip, "err", err)
}

// finish runs after the reader stops: drop subscriptions, let the committer
// answer what was read, flush the outbox, close.
func (c *conn) finish() {
	for _, sub := range c.subs {
		c.dropSub(sub)
	}
	c.closeAllNeg()
	close(c.pending)
	<-c.committerDone
	c.out.close()
	select {
	case <-c.writerDone:
	case <-time.After(c.srv.limits.WriteTimeout):
	}
	c.kill("")
	<-c.writerDone
}

// kill closes the connection now, dropping whatever is queued.
func (c *conn) kill(reason string) {
	c.once.Do(func() {
		if reason != "" {
			c.srv.log.Info("closing connection", "ip", c.ip, "reason", reason)
		}
		close(c.dead)
		c.out.close()
		_ = c.ws.Close()
	})
}

// overflow is called when a live event does not fit the outbox.
func (c *conn) overflow() {
	c.srv.metrics.overflows.Inc()
	c.kill("outbound queue overflow")
}

// writeLoop drains the outbox with a deadline on every write, and pings.
// Just before an event is written it is checked against the deleted set:
// a copy of an event deleted since it was queued is dropped.
func (c *conn) writeLoop() {
	defer close(c.writerDone)
	defer c.out.discard()
	wt := c.srv.limits.WriteTimeout
	ping := time.NewTicker(c.srv.limits.PingInterval)
	defer ping.Stop()
	var batch []outMsg
	var scratch []byte
	sendPing := func() bool {
		return c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(wt)) == nil
	}
	for {
		msgs, done := c.out.take(batch)
		if done {
			code := websocket.CloseNormalClosure
			if c.srv.stopping.Load() {
				code = websocket.CloseGoingAway
			}
			_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(wt))
			return
		}
		if len(msgs) == 0 {
			select {
			case <-c.out.wake:
			case <-c.dead:
				return
			case <-ping.C:
				if !sendPing() {
					c.kill("")
					return
				}
			}
			continue
		}
		select {
		case <-ping.C:
			// A busy subscriber that only reads still needs pings, or its
			// pongs stop and its read deadline expires.
			if !sendPing() {
				c.kill("")
				return
			}
		default:
		}
		for i := range msgs {
			m := &msgs[i]
			if m.event {
				now := time.Now()
				deleted, covered := c.srv.deleted.check(m.id, m.at, now)
				if !covered {
					c.kill("outbound queue too old to check for deleted events")
					return
				}
				if deleted {
					c.srv.metrics.deletedDrops.Inc()
					continue
				}
			}
			b := m.body
			if len(m.prefix)+len(m.suffix) > 0 {
				scratch = append(append(append(scratch[:0], m.prefix...), m.body...), m.suffix...)
				b = scratch
			}
			_ = c.ws.SetWriteDeadline(time.Now().Add(wt))
			if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
				c.kill("")
				return
			}
		}
		c.out.written(msgs)
		clear(msgs)
		batch = msgs
		if cap(scratch) > 1<<20 {
			scratch = nil // do not pin a large buffer per idle connection
		}
	}
}

// send queues an answer to this connection's own request, waiting for room.
func (c *conn) send(ctx context.Context, msg []byte) bool {
	return c.out.pushWait(ctx, plainMsg(msg)) == nil
}

func (c *conn) notice(msg string) {
	c.send(c.srv.hardCtx, encodeNotice(msg))
}

// readAhead bounds the bytes of EVENTs read but not yet committed.
type readAhead struct {
	max  int
	dead chan struct{}

	mu    sync.Mutex
	bytes int
	room  freedSignal // bytes given back
}

func (r *readAhead) init(max int, dead chan struct{}) {
	r.max, r.dead = max, dead
}

// take counts n bytes, waiting while others are pending and n does not fit;
// false means the connection died meanwhile.
func (r *readAhead) take(n int) bool {
	for {
		r.mu.Lock()
		if r.bytes == 0 || r.bytes+n <= r.max {
			r.bytes += n
			r.mu.Unlock()
			return true
		}
		room := r.room.wait()
		r.mu.Unlock()
		select {
		case <-room:
		case <-r.dead:
			return false
		}
	}
}

func (r *readAhead) give(n int) {
	r.mu.Lock()
	r.bytes -= n
	r.room.notify()
	r.mu.Unlock()
}
