package mlsverify

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/marmot"
)

// Config configures a harness run. The zero value of every field but
// Relays has a default.
type Config struct {
	// Relays are websocket URLs of one relay deployment: members are
	// spread over them in turn, so several URLs must share storage (the
	// instances of one relay behind a load balancer).
	Relays []string
	// Members is the group size each scenario grows to; default 20.
	Members int
	// Scenarios to run, by name, in the order given; nil runs all, in
	// Scenarios' order.
	Scenarios []string
	// Seed makes a run reproducible: the same accounts, KeyPackage keys,
	// MLS randomness and group ids (the scenarios' choices are fixed).
	// Zero picks one, which the report shows.
	Seed uint64
	// Timeout bounds each request's wait for the relay; default 10 s.
	Timeout time.Duration
	// ScenarioTimeout bounds one scenario; default 5 minutes plus 2 s per
	// member.
	ScenarioTimeout time.Duration
	// Conns is the number of connections per relay URL the members share;
	// default 8 (public relays allow few connections per address).
	Conns int
	// Restart, when the caller started the relay, restarts it (same
	// address, same storage) for the relay-faults scenario; nil when the
	// relay is not the caller's.
	Restart func(ctx context.Context) error
	// Progress receives a line now and then while scenarios run; nil is
	// quiet.
	Progress io.Writer
}

// Scenario names, in the order `relay harness --scenario all` runs them.
const (
	ScenarioKeyPackages = "keypackage-lifecycle"
	ScenarioInvite      = "invite-and-chat"
	ScenarioConcurrent  = "concurrent-commits"
	ScenarioRemove      = "remove-and-forward-secrecy"
	ScenarioHistory     = "history-repair"
	ScenarioLarge       = "large-group"
	ScenarioFaults      = "relay-faults"
)

// scenario runs in a sim and records its checks in s.res; an error means
// it could not go on (the relay broke something the scenario needs).
type scenario struct {
	name string
	run  func(s *sim) error
}

func scenarios() []scenario {
	return []scenario{
		{ScenarioKeyPackages, keyPackageLifecycle},
		{ScenarioInvite, inviteAndChat},
		{ScenarioConcurrent, concurrentCommits},
		{ScenarioRemove, removeAndForwardSecrecy},
		{ScenarioHistory, historyRepair},
		{ScenarioLarge, largeGroup},
		{ScenarioFaults, relayFaults},
	}
}

// Scenarios lists every scenario name in running order.
func Scenarios() []string {
	var out []string
	for _, s := range scenarios() {
		out = append(out, s.name)
	}
	return out
}

// ErrConfig marks a configuration the harness cannot run.
var ErrConfig = errors.New("mlsverify: bad configuration")

func (c Config) withDefaults() (Config, error) {
	if len(c.Relays) == 0 {
		return c, fmt.Errorf("%w: no relay URL", ErrConfig)
	}
	for _, u := range c.Relays {
		if !strings.HasPrefix(u, "ws://") && !strings.HasPrefix(u, "wss://") {
			return c, fmt.Errorf("%w: relay %q is not a ws:// or wss:// URL", ErrConfig, u)
		}
	}
	if c.Members == 0 {
		c.Members = 20
	}
	if c.Members < 3 {
		return c, fmt.Errorf("%w: at least 3 members, got %d", ErrConfig, c.Members)
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.ScenarioTimeout == 0 {
		c.ScenarioTimeout = 5*time.Minute + time.Duration(c.Members)*2*time.Second
	}
	if c.Conns == 0 {
		c.Conns = 8
	}
	if c.Seed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		c.Seed = binary.BigEndian.Uint64(b[:]) >> 1
	}
	known := Scenarios()
	if len(c.Scenarios) == 0 {
		c.Scenarios = known
	}
	for _, n := range c.Scenarios {
		if !slices.Contains(known, n) {
			return c, fmt.Errorf("%w: unknown scenario %q (known: %s)", ErrConfig, n, strings.Join(known, ", "))
		}
	}
	return c, nil
}

// Run runs the configured scenarios against the relay and reports. A
// relay that cannot be reached or does not answer fails the probe, and
// then every scenario, with a line naming what the relay did; Run itself
// returns an error only for a bad configuration.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	rep := &Report{Seed: cfg.Seed, Members: cfg.Members, Started: start.UTC()}
	info, probe := probeRelays(ctx, cfg, rep)
	rep.Probe = &probe
	byName := map[string]scenario{}
	for _, sc := range scenarios() {
		byName[sc.name] = sc
	}
	for _, name := range cfg.Scenarios {
		res := Result{Scenario: name}
		t0 := time.Now()
		if probe.Status == StatusFail {
			res.check("relay reachable", StatusFail, "%s", probe.Detail)
		} else {
			runScenario(ctx, cfg, byName[name], &res, info)
		}
		res.finish(time.Since(t0))
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "[%s] %s in %.1fs\n", name, strings.ToUpper(string(res.Status)), res.Duration.Seconds())
		}
		rep.Scenarios = append(rep.Scenarios, res)
	}
	rep.Millis = time.Since(start).Milliseconds()
	rep.Passed = probe.Status != StatusFail
	for _, s := range rep.Scenarios {
		if s.Status == StatusFail {
			rep.Passed = false
		}
	}
	return rep, nil
}

func runScenario(ctx context.Context, cfg Config, sc scenario, res *Result, info marmot.RelayInfo) {
	ctx, cancel := context.WithTimeout(ctx, cfg.ScenarioTimeout)
	defer cancel()
	s := newSim(ctx, cfg, sc.name, res, info)
	err := sc.run(s)
	if err != nil {
		res.check("scenario ran to the end", StatusFail, "%s", describe(err, nil))
	}
	cancel()
	s.close()
	s.summarize()
}

// probeRelays reads each relay's NIP-11 document and checks that it
// answers a REQ, with the request timeout: a relay that does not gets one
// clear line instead of every scenario timing out.
func probeRelays(ctx context.Context, cfg Config, rep *Report) (marmot.RelayInfo, Check) {
	var first marmot.RelayInfo
	for i, url := range cfg.Relays {
		c, err := marmot.Dial(ctx, url, marmot.ClientOptions{Timeout: cfg.Timeout})
		if err != nil {
			return first, Check{Name: "relay probe", Status: StatusFail, Detail: fmt.Sprintf("%s: %s", url, describe(err, nil))}
		}
		info := c.Info()
		rep.Relays = append(rep.Relays, RelayReport{URL: url, SupportedNIPs: info.SupportedNIPs, Extensions: info.Extensions})
		if i == 0 {
			first = info
		}
		var nothing [32]byte
		_, _ = rand.Read(nothing[:])
		_, err = c.Fetch(ctx, nostr.Filter{Kinds: []int{marmot.KindGroupEvent}, Tags: nostr.TagMap{"h": {hex.EncodeToString(nothing[:])}}, Limit: 1})
		c.Close()
		if err != nil {
			return first, Check{Name: "relay probe", Status: StatusFail, Detail: fmt.Sprintf("%s: %s", url, describe(err, c))}
		}
	}
	return first, Check{Name: "relay probe", Status: StatusPass}
}

// describe turns a failure into a line naming what the relay did.
func describe(err error, c *marmot.Client) string {
	var malformed uint64
	if c != nil {
		malformed = c.Malformed()
	}
	var e *marmot.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "the scenario ran out of time: " + err.Error()
	case errors.Is(err, marmot.ErrTimeout) && malformed > 0:
		return fmt.Sprintf("the relay answers garbage: %d frames that are not NIP-01 messages, and no valid answer in time (%v)", malformed, err)
	case errors.Is(err, marmot.ErrTimeout):
		return "the relay never answers: " + err.Error()
	case errors.Is(err, marmot.ErrRelay) && strings.Contains(err.Error(), ": dial "):
		return "the relay refuses websocket connections: " + err.Error()
	case errors.Is(err, marmot.ErrRelay) && malformed > 0:
		return fmt.Sprintf("the relay answers garbage (%d frames that are not NIP-01 messages) and the connection failed: %v", malformed, err)
	case errors.Is(err, marmot.ErrRelay):
		return "the relay closes connections: " + err.Error()
	case errors.As(err, &e) && errors.Is(e.Check, marmot.ErrRejected):
		return "the relay refused: " + e.Reason
	}
	return err.Error()
}
