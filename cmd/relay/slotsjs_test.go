package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/internal/testsvc"
)

// TestCommitSlotsSecondImplementation runs slotsjs/client.mjs, a client
// written in JavaScript from docs/commit-slots.md alone, against the relay:
// the document's vectors, then every relay rule of its sections 4 and 5.1,
// on each backend and on two instances sharing PostgreSQL and Redis
// (claims and checks alternating between them, a live ordered reader on
// each). Each line the client prints is one check; any failed check fails
// the test.
func TestCommitSlotsSecondImplementation(t *testing.T) {
	node := nodeWithPackages(t, "slotsjs")
	run := func(t *testing.T, urls ...string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, node, append([]string{"client.mjs"}, urls...)...)
		cmd.Dir = "slotsjs"
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, runErr := cmd.Output()
		checks := 0
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			var line struct {
				Check  string          `json:"check"`
				OK     bool            `json:"ok"`
				Detail json.RawMessage `json:"detail"`
			}
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				t.Errorf("client printed %q", sc.Text())
				continue
			}
			checks++
			if !line.OK {
				t.Errorf("%s: %s", line.Check, line.Detail)
			}
		}
		if runErr != nil && !t.Failed() {
			t.Fatalf("client: %v: %s", runErr, stderr.String())
		}
		// Vectors, NIP-11, and the rules on each instance: a run that stops
		// early (or a client that skips) shows up here.
		if want := 24 + 9*len(urls); checks < want {
			t.Fatalf("client ran %d checks, want at least %d: %s", checks, want, stderr.String())
		}
	}
	for _, backend := range liveBackends {
		t.Run(backend, func(t *testing.T) { run(t, startLive(t, backend).ws) })
	}
	t.Run("two instances on PostgreSQL and Redis", func(t *testing.T) {
		cluster := startCluster(t, 2, testsvc.Redis(t))
		run(t, cluster[0].ws, cluster[1].ws)
	})
}

// nodeWithPackages returns the node binary, having installed the npm
// packages of dir (a folder of this package) when they are missing. No
// node is a loud skip, or a failure under RELAY_TEST_REQUIRE_SERVICES=1.
func nodeWithPackages(t *testing.T, dir string) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err == nil {
		if _, statErr := os.Stat(filepath.Join(dir, "node_modules")); statErr != nil {
			npm, lerr := exec.LookPath("npm")
			if lerr != nil {
				err = lerr
			} else {
				cmd := exec.Command(npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
				cmd.Dir = dir
				if out, cerr := cmd.CombinedOutput(); cerr != nil {
					t.Fatalf("npm ci in %s: %v: %s", dir, cerr, out)
				}
			}
		}
	}
	if err != nil {
		if os.Getenv(testsvc.EnvRequireServices) == "1" {
			t.Fatalf("%s=1 but node cannot run %s: %v", testsvc.EnvRequireServices, dir, err)
		}
		t.Skipf("!!! %s NOT RUN: node is missing (%v); set %s=1 to make this a failure", dir, err, testsvc.EnvRequireServices)
	}
	return node
}
