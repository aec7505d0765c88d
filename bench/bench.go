// Package bench owns the relay ingest load benchmark: it publishes pre-signed events over several
// websocket connections and measures acknowledged events per second and OK latency, measures the
// machine's signature-verification ceiling, and starts the stock khatru baseline (../baseline) so
// Burrow can be compared with it in one run. It speaks raw websocket frames and never checks
// signatures itself, so the client costs as little CPU as possible on a shared machine.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"
)

// Config describes one ingest run against one relay. Zero fields take the defaults noted.
type Config struct {
	// URL is the relay's websocket address (ws:// or wss://). Required.
	URL string
	// Events is how many events to publish in total (default 20,000).
	Events int
	// Conns is how many websocket connections publish at once (default 8). Each sends one EVENT
	// and waits for its OK before sending the next.
	Conns int
	// ContentBytes is the content length of each event (default 600).
	ContentBytes int
	// OnlyGroupEvents publishes only kind 445 events; by default kinds 445 and 1 alternate.
	OnlyGroupEvents bool
	// Groups is how many distinct h values the kind 445 events spread over (default 16).
	Groups int
	// OKTimeout bounds the wait for each OK (default 10 s); missing it aborts the run.
	OKTimeout time.Duration
	// KeepFailures is how many OK-false messages Result keeps verbatim (default 5).
	KeepFailures int
}

// Defaults for Config's zero fields.
const (
	DefaultEvents       = 20000
	DefaultConns        = 8
	DefaultContentBytes = 600
	DefaultGroups       = 16
	DefaultOKTimeout    = 10 * time.Second
	DefaultKeepFailures = 5
)

// ErrConfig marks a Config that cannot be run.
var ErrConfig = errors.New("bench: invalid config")

// withDefaults fills zero fields and rejects impossible values.
func (c Config) withDefaults() (Config, error) {
	if c.URL == "" {
		return c, fmt.Errorf("%w: URL is empty", ErrConfig)
	}
	if !strings.HasPrefix(c.URL, "ws://") && !strings.HasPrefix(c.URL, "wss://") {
		return c, fmt.Errorf("%w: URL %q is not ws:// or wss://", ErrConfig, c.URL)
	}
	fill := func(v *int, def int, name string) error {
		if *v < 0 {
			return fmt.Errorf("%w: %s is negative", ErrConfig, name)
		}
		if *v == 0 {
			*v = def
		}
		return nil
	}
	for _, f := range []struct {
		v    *int
		def  int
		name string
	}{
		{&c.Events, DefaultEvents, "Events"},
		{&c.Conns, DefaultConns, "Conns"},
		{&c.ContentBytes, DefaultContentBytes, "ContentBytes"},
		{&c.Groups, DefaultGroups, "Groups"},
		{&c.KeepFailures, DefaultKeepFailures, "KeepFailures"},
	} {
		if err := fill(f.v, f.def, f.name); err != nil {
			return c, err
		}
	}
	if c.OKTimeout < 0 {
		return c, fmt.Errorf("%w: OKTimeout is negative", ErrConfig)
	}
	if c.OKTimeout == 0 {
		c.OKTimeout = DefaultOKTimeout
	}
	return c, nil
}

// Result is what one run measured. Latency is from writing an EVENT to reading its OK.
type Result struct {
	Events   int // events answered with an OK (true or false)
	Conns    int
	Accepted int // OK true
	// Failures counts OK false; FailureSamples keeps the first few as "<id>: <reason>".
	Failures       int
	FailureSamples []string
	// Duration runs from the first EVENT written (all connections already open, all events
	// signed) to the last OK read.
	Duration time.Duration
	// EventsPerSec is Accepted / Duration: refused events do not count as throughput.
	EventsPerSec float64
	P50, P99     time.Duration
	// ProcessCPU is the CPU time this process (the client, and the relay when it runs in process)
	// used from the first EVENT written to the last OK read; 0 where it is not measured. Unlike
	// events/s it barely moves when other work shares the machine.
	ProcessCPU time.Duration
}

// Run publishes cfg.Events pre-signed events to cfg.URL and measures the relay's ingest. It
// returns an error if the run could not complete (a dial, a broken connection, an OK that never
// came); OK false answers are not errors but are counted in Result.Failures.
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Result{}, err
	}
	events, err := prepare(ctx, cfg)
	if err != nil {
		return Result{}, fmt.Errorf("bench: prepare events: %w", err)
	}

	conns := make([]*websocket.Conn, 0, cfg.Conns)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	dialer := websocket.Dialer{HandshakeTimeout: cfg.OKTimeout}
	for i := range cfg.Conns {
		c, resp, err := dialer.DialContext(ctx, cfg.URL, http.Header{})
		if err != nil {
			return Result{}, fmt.Errorf("bench: dial connection %d to %s: %w", i, cfg.URL, err)
		}
		_ = resp.Body.Close()
		conns = append(conns, c)
	}

	// Cancellation closes the sockets, which unblocks every reader.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-runCtx.Done()
		for _, c := range conns {
			_ = c.Close()
		}
	}()

	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		perConn  = make([]connTally, len(conns))
		errOnce  sync.Once
		firstErr error
	)
	cpu0 := processCPU()
	start := time.Now()
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			perConn[i] = publish(c, events, &next, cfg)
			if err := perConn[i].err; err != nil {
				// The first failure is the cause; the others follow from closing every socket.
				errOnce.Do(func() { firstErr = fmt.Errorf("connection %d: %w", i, err) })
				cancel()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	res := Result{Conns: len(conns), Duration: elapsed, ProcessCPU: processCPU() - cpu0}
	var latencies []time.Duration
	for _, t := range perConn {
		res.Accepted += t.accepted
		res.Failures += t.failures
		for _, s := range t.samples {
			if len(res.FailureSamples) < cfg.KeepFailures {
				res.FailureSamples = append(res.FailureSamples, s)
			}
		}
		latencies = append(latencies, t.latencies...)
	}
	res.Events = res.Accepted + res.Failures
	if elapsed > 0 {
		res.EventsPerSec = float64(res.Accepted) / elapsed.Seconds()
	}
	res.P50, res.P99 = percentile(latencies, 50), percentile(latencies, 99)
	if firstErr != nil {
		// A cancelled parent context is the cause the caller cares about; the closed sockets
		// that follow from it are noise.
		if ctx.Err() != nil {
			return res, fmt.Errorf("bench: run interrupted: %w", ctx.Err())
		}
		return res, fmt.Errorf("bench: run against %s: %w", cfg.URL, firstErr)
	}
	return res, nil
}

// connTally is one connection's share of a run.
type connTally struct {
	accepted, failures int
	samples            []string
	latencies          []time.Duration
	err                error
}

// publish sends events from the shared cursor over one connection, one at a time, until none
// remain or the connection fails.
func publish(c *websocket.Conn, events []presigned, next *atomic.Int64, cfg Config) connTally {
	var t connTally
	t.latencies = make([]time.Duration, 0, len(events)/cfg.Conns+1)
	for {
		i := int(next.Add(1) - 1)
		if i >= len(events) {
			return t
		}
		evt := events[i]
		sent := time.Now()
		_ = c.SetWriteDeadline(sent.Add(cfg.OKTimeout))
		if err := c.WriteMessage(websocket.TextMessage, evt.frame); err != nil {
			t.err = fmt.Errorf("write EVENT %s: %w", evt.id, err)
			return t
		}
		ok, reason, err := awaitOK(c, evt.id, sent.Add(cfg.OKTimeout))
		if err != nil {
			t.err = err
			return t
		}
		t.latencies = append(t.latencies, time.Since(sent))
		if ok {
			t.accepted++
			continue
		}
		t.failures++
		if len(t.samples) < cfg.KeepFailures {
			t.samples = append(t.samples, evt.id+": "+reason)
		}
	}
}

var okLabel = []byte(`"OK"`)

// awaitOK reads until the OK for id arrives, skipping anything else the relay sends (NOTICE,
// AUTH challenges). An OK for another id means the relay answered out of turn: an error.
func awaitOK(c *websocket.Conn, id string, deadline time.Time) (ok bool, reason string, err error) {
	_ = c.SetReadDeadline(deadline)
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			return false, "", fmt.Errorf("read OK for %s: %w", id, err)
		}
		// Cheap pre-check before decoding: most relays write `["OK",` with no spaces.
		if !bytes.Contains(data[:min(len(data), 16)], okLabel) {
			continue
		}
		var msg []json.RawMessage
		if err := json.Unmarshal(data, &msg); err != nil || len(msg) < 3 {
			continue
		}
		var label, gotID string
		if json.Unmarshal(msg[0], &label) != nil || label != "OK" {
			continue
		}
		if err := json.Unmarshal(msg[1], &gotID); err != nil {
			return false, "", fmt.Errorf("OK for %s: bad id field: %w", id, err)
		}
		if gotID != id {
			return false, "", fmt.Errorf("OK for %s: got OK for %s instead", id, gotID)
		}
		if err := json.Unmarshal(msg[2], &ok); err != nil {
			return false, "", fmt.Errorf("OK for %s: bad accepted field: %w", id, err)
		}
		if len(msg) > 3 {
			_ = json.Unmarshal(msg[3], &reason)
		}
		return ok, reason, nil
	}
}

// percentile returns the p-th percentile (nearest rank) of ds, sorting ds in place.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	if !slices.IsSorted(ds) {
		slices.Sort(ds)
	}
	rank := (p*len(ds) + 99) / 100 // ceil(p/100 * n)
	return ds[max(rank, 1)-1]
}
