package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/burrow-relay/burrow/mlsverify"
)

const harnessSynopsis = `Usage: relay harness [--relay ws://...[,ws://...]] [--members N] [--scenario NAME|all] [--seed S] [--json]

Simulated Marmot members, each with its own Nostr account and MLS state, drive
groups through a relay in scenarios (docs/harness.md gives each one's pass/fail
rule), speaking only the public protocol. Without --relay the harness starts
an embedded Burrow on a loopback port and a temporary directory (which also lets
relay-faults restart it). Several URLs must be instances of one deployment that
share storage: members are spread over them. Progress goes to stderr, the
report to stdout; the exit status is 1 when a scenario fails.

Scenarios: ` + "keypackage-lifecycle, invite-and-chat, concurrent-commits, remove-and-forward-secrecy, history-repair, large-group, relay-faults" + `

Flags:`

// harnessFlags are the harness command line.
type harnessFlags struct {
	relays, scenario string
	members, conns   int
	seed             string
	timeout          time.Duration
	json             bool
}

func harnessFlagSet(h *harnessFlags) *envFlags {
	f := newEnvFlags("relay harness")
	f.String(&h.relays, "relay", "", "comma-separated websocket URLs of the relay under test (instances of one deployment); empty starts an embedded Burrow")
	f.Int(&h.members, "members", 20, "group size each scenario grows to")
	f.String(&h.scenario, "scenario", "all", "a scenario name, a comma-separated list, or all")
	f.String(&h.seed, "seed", "", "seed making the run reproducible (accounts, keys, choices); empty picks one, shown in the report")
	f.Duration(&h.timeout, "timeout", 10*time.Second, "how long each request waits for the relay")
	f.Int(&h.conns, "conns", 8, "connections per relay URL the simulated members share")
	f.Bool(&h.json, "json", false, "print the report as JSON instead of a table")
	f.renameTwins("RELAY_HARNESS_")
	return f
}

// renameTwins gives the flags' environment twins a subcommand's own prefix
// (RELAY_HARNESS_MEMBERS rather than RELAY_MEMBERS), so they never collide
// with serve's.
func (e *envFlags) renameTwins(prefix string) {
	for name := range e.envs {
		e.envs[name] = prefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
	}
}

func parseSeed(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseUint(s, 10, 63)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("--seed %q: want a positive integer", s)
	}
	return v, nil
}

// harnessCommand runs `relay harness`.
func harnessCommand(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) error {
	var h harnessFlags
	f := harnessFlagSet(&h)
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			f.usage(stdout, harnessSynopsis)
			return errHelp
		}
	}
	if err := f.parse(args, lookup); err != nil {
		return usageError{err}
	}
	seed, err := parseSeed(h.seed)
	if err != nil {
		return usageError{err}
	}
	cfg := mlsverify.Config{Relays: splitList(h.relays), Members: h.members, Seed: seed, Timeout: h.timeout, Conns: h.conns, Progress: stderr}
	if h.scenario != "all" {
		cfg.Scenarios = splitList(h.scenario)
	}
	if len(cfg.Relays) == 0 {
		er, err := startEmbedded(ctx)
		if err != nil {
			return err
		}
		defer er.close()
		cfg.Relays, cfg.Restart = []string{er.url()}, er.restart
		fmt.Fprintf(stderr, "relay harness: embedded Burrow at %s\n", er.url())
	}
	rep, err := mlsverify.Run(ctx, cfg)
	if errors.Is(err, mlsverify.ErrConfig) {
		return usageError{err}
	}
	if err != nil {
		return err
	}
	if h.json {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteTable(stdout)
	}
	if err != nil {
		return err
	}
	if !rep.Passed {
		return fmt.Errorf("harness: a scenario failed (seed %d)", rep.Seed)
	}
	return nil
}

// embeddedRelay is a Burrow the harness or the self-test started itself,
// on a loopback port and a temporary directory, which it can restart on
// the same address with the same storage.
type embeddedRelay struct {
	mu  sync.Mutex
	cfg config
	r   *runningRelay
	dir string
	log *slog.Logger
}

func startEmbedded(ctx context.Context) (*embeddedRelay, error) {
	dir, err := os.MkdirTemp("", "burrow-harness-")
	if err != nil {
		return nil, err
	}
	cfg, err := parseServeConfig([]string{"--listen", "127.0.0.1:0", "--data-dir", dir}, func(string) (string, bool) { return "", false }, io.Discard)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	e := &embeddedRelay{cfg: cfg, dir: dir, log: slog.New(slog.DiscardHandler)}
	if e.r, err = startRelay(ctx, cfg, e.log); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	e.cfg.Listen = e.r.Addr // a restart comes back on the same address
	return e, nil
}

func (e *embeddedRelay) url() string { return "ws://" + e.cfg.Listen }

// restart stops the relay and starts it again on the same address and
// data directory.
func (e *embeddedRelay) restart(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := e.r.Close(sctx)
	e.r = nil
	if err != nil {
		return err
	}
	r, err := startRelay(ctx, e.cfg, e.log)
	if err != nil {
		return fmt.Errorf("restart on %s: %w", e.cfg.Listen, err)
	}
	e.r = r
	return nil
}

func (e *embeddedRelay) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.r != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.r.Close(ctx)
	}
	_ = os.RemoveAll(e.dir)
}
