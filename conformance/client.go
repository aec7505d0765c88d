package conformance

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"
)

// check is one entry of the suite.
type check struct {
	id, name string
	// budget overrides Config.Timeout when larger.
	budget time.Duration
	run    func(ctx context.Context, e *env) (note string, err error)
}

// env is what every check shares: the configuration and the NIP-11 document read once per run.
type env struct {
	cfg     Config
	info    *relayInfo
	infoErr error
	written writeStats
}

// writeStats counts what the suite sends to the relay under test.
type writeStats struct {
	events, bytes atomic.Int64
}

// dial connects to the relay under test; what the connection sends is
// counted in e.written.
func (e *env) dial(ctx context.Context) (*conn, error) {
	return e.dialWith(ctx, dialOptions{})
}

func (e *env) dialWith(ctx context.Context, opt dialOptions) (*conn, error) {
	opt.stats = &e.written
	return dialWith(ctx, e.cfg.URL, opt)
}

// skipError marks a check that could not apply to this relay; its text is the reason.
type skipError struct{ reason string }

func (s skipError) Error() string { return s.reason }

func skipf(format string, args ...any) error { return skipError{reason: fmt.Sprintf(format, args...)} }

func isSkip(err error) bool {
	var s skipError
	return errors.As(err, &s)
}

// errClosed is returned by queries the relay answered with CLOSED.
var errClosed = errors.New("subscription closed by relay")

// relayInfo is the part of a NIP-11 document the suite reads.
type relayInfo struct {
	SupportedNIPs []int
	// AcceptedKinds is the document's accepted_kinds, nil when absent (a
	// relay that says nothing is taken to accept every kind).
	AcceptedKinds []int
	// MaxSubscriptions is limitation.max_subscriptions, 0 when absent.
	MaxSubscriptions int
	raw              map[string]json.RawMessage
	header           http.Header
}

func (i *relayInfo) supports(nip int) bool {
	for _, n := range i.SupportedNIPs {
		if n == nip {
			return true
		}
	}
	return false
}

// requireNIP skips a check when the relay does not advertise nip in NIP-11.
func (e *env) requireNIP(nip int) error {
	if e.info == nil {
		return skipf("NIP-%02d support unknown: NIP-11 document unavailable (%v)", nip, e.infoErr)
	}
	if !e.info.supports(nip) {
		return skipf("NIP-%02d not advertised in NIP-11 supported_nips", nip)
	}
	return nil
}

func httpURL(wsURL string) (string, error) {
	u, err := url.Parse(wsURL)
	if err != nil {
		return "", fmt.Errorf("parse relay url %q: %w", wsURL, err)
	}
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	case "http", "https":
	default:
		return "", fmt.Errorf("relay url %q: scheme must be ws or wss", wsURL)
	}
	return u.String(), nil
}

// fetchInfo reads the NIP-11 document and checks its shape.
func fetchInfo(ctx context.Context, wsURL string) (*relayInfo, error) {
	u, err := httpURL(wsURL)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("build NIP-11 request: %w", err)
	}
	req.Header.Set("Accept", "application/nostr+json")
	// An Origin makes CORS middleware answer with its headers, which NIP-11 requires.
	req.Header.Set("Origin", "https://conformance.invalid")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read NIP-11 body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("NIP-11 GET answered HTTP %d", resp.StatusCode)
	}
	info := &relayInfo{header: resp.Header}
	if err := json.Unmarshal(body, &info.raw); err != nil {
		return nil, fmt.Errorf("NIP-11 body is not a JSON object: %w", err)
	}
	if raw, ok := info.raw["supported_nips"]; ok {
		if err := json.Unmarshal(raw, &info.SupportedNIPs); err != nil {
			return nil, fmt.Errorf("NIP-11 supported_nips is not an array of integers: %w", err)
		}
	}
	if raw, ok := info.raw["accepted_kinds"]; ok {
		if err := json.Unmarshal(raw, &info.AcceptedKinds); err != nil {
			return nil, fmt.Errorf("NIP-11 accepted_kinds is not an array of integers: %w", err)
		}
	}
	if raw, ok := info.raw["limitation"]; ok {
		var lim map[string]json.RawMessage
		if err := json.Unmarshal(raw, &lim); err != nil {
			return nil, fmt.Errorf("NIP-11 limitation is not an object: %w", err)
		}
		if ms, ok := lim["max_subscriptions"]; ok {
			if err := json.Unmarshal(ms, &info.MaxSubscriptions); err != nil {
				return nil, fmt.Errorf("NIP-11 limitation.max_subscriptions is not an integer: %w", err)
			}
		}
	}
	return info, nil
}

// frame is one message read from the relay: its elements and label, or the read error.
type frame struct {
	label string
	elems []json.RawMessage
	text  []byte
	err   error
}

// conn is a raw websocket connection to the relay. Frames are read by one goroutine into a
// buffered channel unless the connection was opened with noRead, which is how the
// slow-consumer check models a client that stops reading.
type conn struct {
	ws     *websocket.Conn
	frames chan frame
	wmu    sync.Mutex
	once   sync.Once
	done   chan struct{}
	// lastNotice is the most recent NOTICE, quoted in timeouts: relays often explain a frame
	// they could not parse with a NOTICE instead of an OK. Only the check's goroutine uses it.
	lastNotice string
	stats      *writeStats // nil: not counted
}

type dialOptions struct {
	noRead bool
	// readBuffer, when positive, shrinks the kernel receive buffer so that a client that
	// stops reading pushes back on the relay after a few kilobytes instead of megabytes.
	readBuffer int
	// stats, when set, counts the EVENT frames and bytes sent.
	stats *writeStats
}

func dial(ctx context.Context, rawURL string) (*conn, error) {
	return dialWith(ctx, rawURL, dialOptions{})
}

func dialWith(ctx context.Context, rawURL string, opt dialOptions) (*conn, error) {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	if opt.readBuffer > 0 {
		var nd net.Dialer
		d.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := nd.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if tc, ok := c.(*net.TCPConn); ok {
				if err := tc.SetReadBuffer(opt.readBuffer); err != nil {
					c.Close()
					return nil, fmt.Errorf("shrink receive buffer: %w", err)
				}
			}
			return c, nil
		}
	}
	ws, resp, err := d.DialContext(ctx, rawURL, nil)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", rawURL, err)
	}
	c := &conn{ws: ws, frames: make(chan frame, 8192), done: make(chan struct{}), stats: opt.stats}
	if !opt.noRead {
		go c.readLoop()
	}
	return c, nil
}

func (c *conn) readLoop() {
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			select {
			case c.frames <- frame{err: fmt.Errorf("read from relay: %w", err)}:
			case <-c.done:
			}
			return
		}
		f := frame{text: data}
		if jerr := json.Unmarshal(data, &f.elems); jerr != nil || len(f.elems) == 0 ||
			json.Unmarshal(f.elems[0], &f.label) != nil {
			f.err = fmt.Errorf("relay sent a frame that is not a JSON array with a label: %.120q", data)
		}
		select {
		case c.frames <- f:
		case <-c.done:
			return
		}
	}
}

func (c *conn) close() {
	c.once.Do(func() {
		close(c.done)
		c.wmu.Lock()
		_ = c.ws.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		c.wmu.Unlock()
		_ = c.ws.Close()
	})
}

// sendRaw writes one text frame, bounded by ctx's deadline.
func (c *conn) sendRaw(ctx context.Context, data []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(DefaultTimeout)
	}
	if err := c.ws.SetWriteDeadline(dl); err != nil {
		return fmt.Errorf("set write deadline: %w", err)
	}
	if err := c.ws.WriteMessage(websocket.TextMessage, data); err != nil {
		return fmt.Errorf("write to relay: %w", err)
	}
	if c.stats != nil {
		c.stats.bytes.Add(int64(len(data)))
		if bytes.HasPrefix(data, []byte(`["EVENT"`)) {
			c.stats.events.Add(1)
		}
	}
	return nil
}

func (c *conn) send(ctx context.Context, msg ...any) error {
	data, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("encode message: %w", err)
	}
	return c.sendRaw(ctx, data)
}

// next returns the next frame that is not a NOTICE or an AUTH challenge.
func (c *conn) next(ctx context.Context) (frame, error) {
	for {
		select {
		case f := <-c.frames:
			if f.err != nil {
				return f, f.err
			}
			if f.label == "NOTICE" && len(f.elems) > 1 {
				_ = json.Unmarshal(f.elems[1], &c.lastNotice)
			}
			if f.label == "NOTICE" || f.label == "AUTH" {
				continue
			}
			return f, nil
		case <-ctx.Done():
			if c.lastNotice != "" {
				return frame{}, fmt.Errorf("waiting for the relay (its last NOTICE: %q): %w", c.lastNotice, ctx.Err())
			}
			return frame{}, fmt.Errorf("waiting for the relay: %w", ctx.Err())
		}
	}
}

type okAnswer struct {
	ok     bool
	reason string
}

func (a okAnswer) String() string {
	return fmt.Sprintf("OK %t %q", a.ok, a.reason)
}

func parseOK(f frame) (id string, a okAnswer, err error) {
	if len(f.elems) < 3 {
		return "", a, fmt.Errorf("OK message too short: %s", f.text)
	}
	if err := json.Unmarshal(f.elems[1], &id); err != nil {
		return "", a, fmt.Errorf("OK message event id is not a string: %s", f.text)
	}
	if err := json.Unmarshal(f.elems[2], &a.ok); err != nil {
		return "", a, fmt.Errorf("OK message status is not a boolean: %s", f.text)
	}
	if len(f.elems) > 3 {
		if err := json.Unmarshal(f.elems[3], &a.reason); err != nil {
			return "", a, fmt.Errorf("OK message reason is not a string: %s", f.text)
		}
	}
	return id, a, nil
}

// waitOK waits for the OK that answers event id, ignoring other traffic.
func (c *conn) waitOK(ctx context.Context, id string) (okAnswer, error) {
	for {
		f, err := c.next(ctx)
		if err != nil {
			return okAnswer{}, fmt.Errorf("no OK for event %.12s: %w", id, err)
		}
		if f.label != "OK" {
			continue
		}
		got, a, err := parseOK(f)
		if err != nil {
			return a, err
		}
		if got == id {
			return a, nil
		}
	}
}

// publish sends one event and returns the relay's OK for it.
func (c *conn) publish(ctx context.Context, ev *nostr.Event) (okAnswer, error) {
	if err := c.send(ctx, "EVENT", ev); err != nil {
		return okAnswer{}, err
	}
	return c.waitOK(ctx, ev.ID)
}

// mustStore publishes ev and fails unless the relay answers OK true.
func (c *conn) mustStore(ctx context.Context, ev *nostr.Event) error {
	a, err := c.publish(ctx, ev)
	if err != nil {
		return err
	}
	if !a.ok {
		return fmt.Errorf("relay refused a valid kind %d event: %s", ev.Kind, a)
	}
	return nil
}

// subscribe sends REQ and returns the stored events up to EOSE. A CLOSED answer returns
// errClosed wrapped with the relay's reason.
func (c *conn) subscribe(ctx context.Context, subID string, filters ...nostr.Filter) ([]nostr.Event, error) {
	msg := []any{"REQ", subID}
	for _, f := range filters {
		msg = append(msg, f)
	}
	if err := c.send(ctx, msg...); err != nil {
		return nil, err
	}
	var evs []nostr.Event
	for {
		f, err := c.next(ctx)
		if err != nil {
			return evs, fmt.Errorf("no EOSE for subscription %s: %w", subID, err)
		}
		if !frameForSub(f, subID) {
			continue
		}
		switch f.label {
		case "EVENT":
			ev, err := frameEvent(f)
			if err != nil {
				return evs, err
			}
			evs = append(evs, ev)
		case "EOSE":
			return evs, nil
		case "CLOSED":
			return evs, fmt.Errorf("%w: %s", errClosed, closedReason(f))
		}
	}
}

// query runs one REQ to EOSE, then CLOSEs it.
func (c *conn) query(ctx context.Context, filters ...nostr.Filter) ([]nostr.Event, error) {
	subID := "q-" + randomHex(6)
	evs, err := c.subscribe(ctx, subID, filters...)
	if err != nil {
		return evs, err
	}
	if err := c.send(ctx, "CLOSE", subID); err != nil {
		return evs, err
	}
	return evs, nil
}

// nextEvent waits for the next live event on subID.
func (c *conn) nextEvent(ctx context.Context, subID string) (nostr.Event, error) {
	for {
		f, err := c.next(ctx)
		if err != nil {
			return nostr.Event{}, err
		}
		if !frameForSub(f, subID) {
			continue
		}
		switch f.label {
		case "EVENT":
			return frameEvent(f)
		case "CLOSED":
			return nostr.Event{}, fmt.Errorf("%w: %s", errClosed, closedReason(f))
		}
	}
}

// expectNoEvent fails if subID receives an event within d.
func (c *conn) expectNoEvent(ctx context.Context, subID string, d time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	ev, err := c.nextEvent(wctx, subID)
	if err == nil {
		return fmt.Errorf("unexpected event %.12s (kind %d) on subscription %s", ev.ID, ev.Kind, subID)
	}
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return nil
	}
	return err
}

func frameForSub(f frame, subID string) bool {
	if f.label != "EVENT" && f.label != "EOSE" && f.label != "CLOSED" {
		return false
	}
	if len(f.elems) < 2 {
		return false
	}
	var got string
	return json.Unmarshal(f.elems[1], &got) == nil && got == subID
}

func frameEvent(f frame) (nostr.Event, error) {
	var ev nostr.Event
	if len(f.elems) < 3 {
		return ev, fmt.Errorf("EVENT message without an event: %.200s", f.text)
	}
	if err := json.Unmarshal(f.elems[2], &ev); err != nil {
		return ev, fmt.Errorf("EVENT message carries an undecodable event: %w", err)
	}
	return ev, nil
}

func closedReason(f frame) string {
	var r string
	if len(f.elems) > 2 {
		_ = json.Unmarshal(f.elems[2], &r)
	}
	return r
}

// queryOnce opens a fresh connection for one query, so that what it sees does not depend on
// the state of the check's other connections.
func (e *env) queryOnce(ctx context.Context, filters ...nostr.Filter) ([]nostr.Event, error) {
	c, err := e.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer c.close()
	return c.query(ctx, filters...)
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // cannot happen on supported platforms
	}
	return hex.EncodeToString(b)
}

// key is a fresh signing identity.
type key struct{ sk, pk string }

func newKey() key {
	sk := nostr.GeneratePrivateKey()
	pk, err := nostr.GetPublicKey(sk)
	if err != nil {
		panic(fmt.Sprintf("derive public key: %v", err)) // a generated key is always valid
	}
	return key{sk: sk, pk: pk}
}

// event builds and signs an event.
func (k key) event(kind int, createdAt int64, tags nostr.Tags, content string) *nostr.Event {
	if tags == nil {
		tags = nostr.Tags{}
	}
	ev := &nostr.Event{Kind: kind, CreatedAt: nostr.Timestamp(createdAt), Tags: tags, Content: content}
	if err := ev.Sign(k.sk); err != nil {
		panic(fmt.Sprintf("sign event: %v", err)) // only fails on a malformed key
	}
	return ev
}

func now() int64 { return time.Now().Unix() }

// ids lists event ids, shortened, for messages.
func ids(evs []nostr.Event) string {
	parts := make([]string, len(evs))
	for i, ev := range evs {
		parts[i] = fmt.Sprintf("%.8s@%d", ev.ID, ev.CreatedAt)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// sameIDs reports whether evs are exactly want, in order.
func sameIDs(evs []nostr.Event, want ...*nostr.Event) bool {
	if len(evs) != len(want) {
		return false
	}
	for i := range evs {
		if evs[i].ID != want[i].ID {
			return false
		}
	}
	return true
}

func wantIDs(want ...*nostr.Event) string {
	evs := make([]nostr.Event, len(want))
	for i, w := range want {
		evs[i] = *w
	}
	return ids(evs)
}

// expectExactly runs filters on a fresh connection and compares the result, in order.
func (e *env) expectExactly(ctx context.Context, what string, filters []nostr.Filter, want ...*nostr.Event) error {
	got, err := e.queryOnce(ctx, filters...)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if !sameIDs(got, want...) {
		return fmt.Errorf("%s: got %s, want %s", what, ids(got), wantIDs(want...))
	}
	return nil
}

// expectSet is expectExactly ignoring order.
func (e *env) expectSet(ctx context.Context, what string, filters []nostr.Filter, want ...*nostr.Event) error {
	got, err := e.queryOnce(ctx, filters...)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	seen := make(map[string]int, len(got))
	for _, ev := range got {
		seen[ev.ID]++
	}
	ok := len(got) == len(want)
	for _, w := range want {
		if seen[w.ID] != 1 {
			ok = false
		}
	}
	if !ok {
		return fmt.Errorf("%s: got %s, want %s (any order)", what, ids(got), wantIDs(want...))
	}
	return nil
}

func filters(f ...nostr.Filter) []nostr.Filter { return f }
