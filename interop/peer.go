// Package interop drives independent MLS implementations as subprocesses so
// Burrow's tests can exchange real bytes with code nobody on the team wrote.
//
// Each peer (ts-mls 1.6.4 under node in interop/tsmls, ts-mls 2.0.0-rc.10 in
// interop/tsmls2, mls-go in its own module in interop/mlsgo) speaks the same
// line-delimited JSON protocol on stdin/stdout;
// interop/README.md lists the ops. Burrow's own engine speaks it too (Engine
// in burrow.go, in process, or cmd/burrowpeer as a process), so a test can
// pair any two implementations.
package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
)

// Peer kinds accepted by Start.
const (
	KindTSMLS  = "tsmls"
	KindTSMLS2 = "tsmls2"
	KindMLSGo  = "mlsgo"
	// KindBurrowPeer is Burrow's own engine as a process (cmd/burrowpeer),
	// for tests that want every member in a process of its own.
	KindBurrowPeer = "burrowpeer"
)

// nodePackages says whether kind runs under node (from a folder of that
// name beside this file, with its package.json and package-lock.json) and
// which npm packages it cannot start without.
func nodePackages(kind string) ([]string, bool) {
	switch kind {
	case KindTSMLS:
		return []string{"ts-mls", "@noble/hashes", "@noble/curves", "@hpke/chacha20poly1305"}, true
	case KindTSMLS2:
		return []string{"ts-mls", "@noble/curves", "@noble/ciphers", "@hpke/chacha20poly1305"}, true
	}
	return nil, false
}

var (
	// ErrUnavailable means a peer cannot run on this machine (node or the npm
	// packages are missing); tests may skip on it unless services are required.
	ErrUnavailable = errors.New("interop peer unavailable")
	// ErrUnknownKind is returned by Start for a kind it does not know.
	ErrUnknownKind = errors.New("unknown peer kind")
	// ErrPeerGone means the subprocess exited or its pipe broke.
	ErrPeerGone = errors.New("interop peer gone")
	// ErrDesync means a call was abandoned midway (its context ended), so later
	// responses can no longer be matched; the peer is closed.
	ErrDesync = errors.New("interop peer out of step")
)

// CallError is a request the peer answered with ok:false.
type CallError struct {
	Kind, Op, Message string
}

func (e *CallError) Error() string {
	return fmt.Sprintf("%s peer: %s: %s", e.Kind, e.Op, e.Message)
}

// Hex is a byte string carried as lowercase hex in the protocol.
type Hex []byte

// MarshalJSON writes the bytes as a lowercase hex string.
func (h Hex) MarshalJSON() ([]byte, error) { return json.Marshal(hex.EncodeToString(h)) }

// UnmarshalJSON reads a hex string.
func (h *Hex) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("hex field: %w", err)
	}
	v, err := hex.DecodeString(s)
	if err != nil {
		return fmt.Errorf("hex field: %w", err)
	}
	*h = v
	return nil
}

// Uint64 reads a JSON number or a decimal string (ts-mls sends lifetimes as
// strings since 2^63-1 does not survive a JavaScript number).
type Uint64 uint64

// UnmarshalJSON accepts 42 or "42".
func (u *Uint64) UnmarshalJSON(b []byte) error {
	s := string(bytes.Trim(b, `"`))
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("uint64 field: %w", err)
	}
	*u = Uint64(v)
	return nil
}

// Config says where the peers live; the zero value finds them next to this
// package's source.
type Config struct {
	// Dir is the interop directory holding tsmls/, tsmls2/ and mlsgo/.
	Dir string
	// Node is the node executable; default "node" on PATH.
	Node string
	// Go is the go executable used to build the mls-go peer; default "go".
	Go string
	// Stderr receives the subprocess's diagnostics; default os.Stderr.
	Stderr io.Writer
	// MLSGoPeer is a prebuilt mls-go peer binary (see BuildMLSGoPeer); when
	// empty, each Start of an mlsgo peer builds one.
	MLSGoPeer string
	// BurrowPeer is a prebuilt cmd/burrowpeer binary (see BuildBurrowPeer),
	// needed to start a KindBurrowPeer peer; BurrowPeerArgs are its flags.
	BurrowPeer     string
	BurrowPeerArgs []string
}

// Peer is one running peer process. Calls are serialized.
type Peer struct {
	kind   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan []byte
	tmpDir string

	mu     sync.Mutex
	nextID uint64
	broken error
	closed bool
}

// Start runs a peer of the given kind (KindTSMLS, KindTSMLS2 or KindMLSGo)
// with the default Config.
func Start(ctx context.Context, kind string) (*Peer, error) {
	return Config{}.Start(ctx, kind)
}

func (c Config) withDefaults() Config {
	if c.Dir == "" {
		// The peers ship as source beside this file; tests run from a checkout.
		_, file, _, _ := runtime.Caller(0)
		c.Dir = filepath.Dir(file)
	}
	if c.Node == "" {
		c.Node = "node"
	}
	if c.Go == "" {
		c.Go = "go"
	}
	if c.Stderr == nil {
		c.Stderr = os.Stderr
	}
	return c
}

// Available reports, with an ErrUnavailable-wrapped reason, whether a peer of
// this kind can run here without starting it.
func (c Config) Available(kind string) error {
	c = c.withDefaults()
	if pkgs, ok := nodePackages(kind); ok {
		if _, err := exec.LookPath(c.Node); err != nil {
			return fmt.Errorf("%w: node not found: %v", ErrUnavailable, err)
		}
		for _, pkg := range pkgs {
			pj := filepath.Join(c.Dir, kind, "node_modules", filepath.FromSlash(pkg), "package.json")
			if _, err := os.Stat(pj); err != nil {
				return fmt.Errorf("%w: npm package %s missing (run npm ci in %s): %v",
					ErrUnavailable, pkg, filepath.Join(c.Dir, kind), err)
			}
		}
		return nil
	}
	switch kind {
	case KindMLSGo:
		if _, err := exec.LookPath(c.Go); err != nil {
			return fmt.Errorf("%w: go not found: %v", ErrUnavailable, err)
		}
		return nil
	case KindBurrowPeer:
		if c.BurrowPeer == "" {
			return fmt.Errorf("%w: no burrowpeer binary (Config.BurrowPeer, see BuildBurrowPeer)", ErrUnavailable)
		}
		return nil
	}
	return fmt.Errorf("%q: %w", kind, ErrUnknownKind)
}

// InstallNodePackages runs `npm ci` in a node peer's folder (kind KindTSMLS
// or KindTSMLS2), installing the exact versions its lockfile pins, so a
// fresh checkout needs no manual step before the interop tests.
func (c Config) InstallNodePackages(ctx context.Context, kind string) error {
	c = c.withDefaults()
	if _, ok := nodePackages(kind); !ok {
		return fmt.Errorf("%q is not a node peer: %w", kind, ErrUnknownKind)
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return fmt.Errorf("%w: npm not found: %v", ErrUnavailable, err)
	}
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = filepath.Join(c.Dir, kind)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w: npm ci in %s: %v\n%s", ErrUnavailable, cmd.Dir, err, out)
	}
	return nil
}

// Start runs a peer of the given kind. The mls-go peer is built into a
// temporary directory first (the Go build cache makes repeats cheap).
func (c Config) Start(ctx context.Context, kind string) (*Peer, error) {
	c = c.withDefaults()
	if err := c.Available(kind); err != nil {
		return nil, err
	}
	if _, ok := nodePackages(kind); ok {
		// --expose-gc lets the heap op collect before measuring.
		return startProcess(kind, exec.Command(c.Node, "--expose-gc", filepath.Join(c.Dir, kind, "peer.mjs")), "", c.Stderr)
	}
	switch kind {
	case KindMLSGo:
		if c.MLSGoPeer != "" {
			return startProcess(kind, exec.Command(c.MLSGoPeer), "", c.Stderr)
		}
		tmp, err := os.MkdirTemp("", "burrow-mlsgo-peer-")
		if err != nil {
			return nil, fmt.Errorf("mlsgo peer: %w", err)
		}
		bin, err := c.BuildMLSGoPeer(ctx, tmp)
		if err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
		return startProcess(kind, exec.Command(bin), tmp, c.Stderr)
	case KindBurrowPeer:
		return startProcess(kind, exec.Command(c.BurrowPeer, c.BurrowPeerArgs...), "", c.Stderr)
	}
	return nil, fmt.Errorf("%q: %w", kind, ErrUnknownKind)
}

// BuildBurrowPeer builds cmd/burrowpeer (Burrow's engine as a peer process)
// into dir and returns the binary's path, for Config.BurrowPeer. It is
// built without the caller's flags, so a test run under -race still gets
// a peer at full speed.
func (c Config) BuildBurrowPeer(ctx context.Context, dir string) (string, error) {
	c = c.withDefaults()
	if _, err := exec.LookPath(c.Go); err != nil {
		return "", fmt.Errorf("%w: go not found: %v", ErrUnavailable, err)
	}
	bin := filepath.Join(dir, "burrowpeer")
	build := exec.CommandContext(ctx, c.Go, "build", "-o", bin, "./cmd/burrowpeer")
	build.Dir = c.Dir // the relay's module, with the caller's GOFLAGS
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("burrowpeer: go build: %w\n%s", err, out)
	}
	return bin, nil
}

// BuildMLSGoPeer builds the mls-go peer (module interop/mlsgo) into dir and
// returns the binary's path, for Config.MLSGoPeer.
func (c Config) BuildMLSGoPeer(ctx context.Context, dir string) (string, error) {
	c = c.withDefaults()
	if err := c.Available(KindMLSGo); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "mlsgo-peer")
	build := exec.CommandContext(ctx, c.Go, "build", "-o", bin, "./peer")
	build.Dir = filepath.Join(c.Dir, "mlsgo")
	// The peer module must not inherit the caller's workspace or flags.
	build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("mlsgo peer: go build: %w\n%s", err, out)
	}
	return bin, nil
}

// startProcess runs cmd as a peer; tmpDir, if set, is removed on Close. The
// process outlives Start's context on purpose: it ends with Close.
func startProcess(kind string, cmd *exec.Cmd, tmpDir string, stderr io.Writer) (*Peer, error) {
	p := &Peer{kind: kind, cmd: cmd, tmpDir: tmpDir, lines: make(chan []byte, 1)}
	p.cmd.Stderr = stderr
	stdin, err := p.cmd.StdinPipe()
	if err != nil {
		p.cleanup()
		return nil, fmt.Errorf("%s peer: %w", kind, err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		p.cleanup()
		return nil, fmt.Errorf("%s peer: %w", kind, err)
	}
	p.stdin = stdin
	if err := p.cmd.Start(); err != nil {
		p.cleanup()
		return nil, fmt.Errorf("%s peer: %w", kind, err)
	}
	go p.readLines(stdout)
	return p, nil
}

// readLines forwards each stdout line; the channel closes when the process
// stops writing.
func (p *Peer) readLines(r io.Reader) {
	defer close(p.lines)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		p.lines <- append([]byte(nil), sc.Bytes()...)
	}
}

// Kind names the implementation behind the peer.
func (p *Peer) Kind() string { return p.kind }

// Call sends one request and decodes the response's fields into out (which
// may be nil). args is any value that marshals to a JSON object (or nil).
// An ok:false answer is returned as *CallError.
func (p *Peer) Call(ctx context.Context, op string, args any, out any) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("%s peer: %s: %w", p.kind, op, ErrPeerGone)
	}
	if p.broken != nil {
		return p.broken
	}
	p.nextID++
	id := p.nextID
	line, err := requestLine(id, op, args)
	if err != nil {
		return fmt.Errorf("%s peer: %s: %w", p.kind, op, err)
	}
	if _, err := p.stdin.Write(line); err != nil {
		p.broken = fmt.Errorf("%s peer: %s: %w: %v", p.kind, op, ErrPeerGone, err)
		return p.broken
	}
	var raw []byte
	select {
	case l, ok := <-p.lines:
		if !ok {
			p.broken = fmt.Errorf("%s peer: %s: %w: stdout closed", p.kind, op, ErrPeerGone)
			return p.broken
		}
		raw = l
	case <-ctx.Done():
		p.broken = fmt.Errorf("%s peer: %s: %w: %v", p.kind, op, ErrDesync, ctx.Err())
		p.kill()
		return p.broken
	}
	var head struct {
		ID    uint64 `json:"id"`
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		p.broken = fmt.Errorf("%s peer: %s: %w: bad response line: %v", p.kind, op, ErrDesync, err)
		return p.broken
	}
	if head.ID != id {
		p.broken = fmt.Errorf("%s peer: %s: %w: response id %d, want %d", p.kind, op, ErrDesync, head.ID, id)
		return p.broken
	}
	if !head.OK {
		return &CallError{Kind: p.kind, Op: op, Message: head.Error}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s peer: %s: decode response: %w", p.kind, op, err)
		}
	}
	return nil
}

// requestLine builds {"id":…,"op":…,<fields of args>}\n.
func requestLine(id uint64, op string, args any) ([]byte, error) {
	req := map[string]json.RawMessage{}
	if args != nil {
		b, err := json.Marshal(args)
		if err != nil {
			return nil, fmt.Errorf("encode args: %w", err)
		}
		if err := json.Unmarshal(b, &req); err != nil {
			return nil, fmt.Errorf("args must encode as a JSON object: %w", err)
		}
	}
	req["id"], _ = json.Marshal(id)
	req["op"], _ = json.Marshal(op)
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	return append(b, '\n'), nil
}

// Close asks the peer to quit, waits for it and removes its temporary files.
func (p *Peer) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	if p.broken == nil {
		if line, err := requestLine(p.nextID+1, "quit", nil); err == nil {
			_, _ = p.stdin.Write(line)
		}
	}
	_ = p.stdin.Close()
	if p.broken != nil {
		// A peer out of step may not be reading; do not wait for it to notice.
		p.kill()
	}
	// Drain so the process is never blocked writing to a full pipe.
	go func() {
		for range p.lines {
		}
	}()
	err := p.cmd.Wait()
	p.cleanup()
	if p.broken != nil {
		// The process was killed on purpose; its exit status says nothing new.
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s peer: exit: %w", p.kind, err)
	}
	return nil
}

func (p *Peer) kill() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
	}
}

func (p *Peer) cleanup() {
	if p.tmpDir != "" {
		os.RemoveAll(p.tmpDir)
		p.tmpDir = ""
	}
}
