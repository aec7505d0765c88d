// Package testsvc gives each test its own PostgreSQL database and Redis
// database, on the servers named by RELAY_TEST_DATABASE_URL and
// RELAY_TEST_REDIS_URL when set, otherwise on throwaway servers started from
// the local binaries and shared by the tests of one process.
//
// When a service can be neither reached nor started the test is skipped with
// a message naming what is missing, or fails when
// RELAY_TEST_REQUIRE_SERVICES=1 (as in CI). Packages that use it call Main
// from their TestMain so the throwaway servers stop when the tests end.
package testsvc

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Environment variables read by this package.
const (
	EnvDatabaseURL     = "RELAY_TEST_DATABASE_URL"
	EnvRedisURL        = "RELAY_TEST_REDIS_URL"
	EnvRequireServices = "RELAY_TEST_REQUIRE_SERVICES"
)

// options is what the exported helpers read from the process; tests of this
// package replace it to simulate a machine without services.
type options struct {
	getenv  func(string) string
	binDirs []string // nil: the default search (PostgreSQL's lib dirs, then PATH)
	reg     *registry
}

func defaultOptions() options {
	return options{getenv: os.Getenv, reg: &processServers}
}

func (o options) required() bool { return o.getenv(EnvRequireServices) == "1" }

// unavailable stops the test because a service is missing: a skip normally,
// a failure when services are required.
func (o options) unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := "testsvc: SERVICE UNAVAILABLE: " + fmt.Sprintf(format, args...)
	if o.required() {
		t.Fatal(msg + " (" + EnvRequireServices + "=1)")
	}
	t.Skip(msg + " (set " + EnvRequireServices + "=1 to make this a failure)")
}

// registry holds the throwaway servers of one test process. It is a
// process-wide value (processServers) because the helpers take only a
// testing.TB, the servers must outlive single tests to keep runs short, and
// Main must find them to stop them; every field is guarded by mu.
type registry struct {
	mu       sync.Mutex
	pg       *pgCluster
	pgErr    error
	redis    *RedisProc
	redisErr error
	stops    []func()
}

var processServers registry

// Main runs the package's tests, stops the throwaway servers they started
// and exits with the tests' code. Call it from TestMain. Without it the
// servers still die with the test process (parent-death signal), but their
// temporary directories stay until a later run sweeps them (sweepStale).
func Main(m *testing.M) {
	code := m.Run()
	processServers.stopAll()
	os.Exit(code)
}

func (r *registry) stopAll() {
	r.mu.Lock()
	stops := r.stops
	r.stops = nil
	r.pg, r.redis = nil, nil
	r.pgErr, r.redisErr = nil, nil
	r.mu.Unlock()
	for i := len(stops) - 1; i >= 0; i-- {
		stops[i]()
	}
}

// findBinary looks for name in dirs, or by default in PostgreSQL's library
// directories (newest version first) and then on PATH.
func findBinary(name string, dirs []string) (string, error) {
	if dirs == nil {
		matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		for i := len(matches) - 1; i >= 0; i-- {
			p := filepath.Join(matches[i], name)
			if isExecutable(p) {
				return p, nil
			}
		}
		return exec.LookPath(name)
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in %v", name, dirs)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// staleAge is how old a leftover server directory must be before sweepStale
// removes it.
const staleAge = time.Hour

// serverPidFile holds the pid of a throwaway redis-server in its directory.
const serverPidFile = "server.pid"

// sweepStale removes the directories (named prefix* in the temp dir) that
// earlier test processes left behind when they were killed before Main
// could stop their servers: older than staleAge and with no live server
// (a postmaster.pid, or for redis-server a serverPidFile, naming a running
// process). A cluster's files are tens of
// megabytes, so leaks add up on a developer's machine.
func sweepStale(prefix string, now time.Time) {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"*"))
	for _, dir := range matches {
		fi, err := os.Stat(dir)
		if err != nil || !fi.IsDir() || now.Sub(fi.ModTime()) < staleAge {
			continue
		}
		if pidAlive(filepath.Join(dir, "data", "postmaster.pid")) || pidAlive(filepath.Join(dir, serverPidFile)) {
			continue
		}
		_ = os.RemoveAll(dir)
	}
}

// pidAlive reports whether the first line of pidFile names a running process.
func pidAlive(pidFile string) bool {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil || pid <= 0 {
		return false
	}
	return syscall.Kill(pid, 0) == nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
