package testsvc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PG is one test's PostgreSQL database.
type PG struct {
	// URL connects to the test's own, initially empty database.
	URL string
	// DataDir is the cluster's data directory when known (the throwaway
	// cluster's, or the server's data_directory setting when readable), so a
	// test can scan the files for bytes that should be gone; "" otherwise.
	DataDir string
}

// Postgres creates a fresh, empty database for this test and drops it when
// the test ends. It uses the server named by RELAY_TEST_DATABASE_URL when set
// (the URL's own database is only used to run CREATE/DROP DATABASE),
// otherwise a throwaway cluster shared by the process (see Main).
func Postgres(t testing.TB) PG {
	t.Helper()
	return postgresWith(t, defaultOptions())
}

func postgresWith(t testing.TB, o options) PG {
	t.Helper()
	base := o.getenv(EnvDatabaseURL)
	dataDir := ""
	if base == "" {
		c, err := o.reg.cluster(o)
		if err != nil {
			o.unavailable(t, "no PostgreSQL: %s is unset and no throwaway cluster could start: %v", EnvDatabaseURL, err)
			return PG{}
		}
		base, dataDir = c.url, c.dataDir
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		o.unavailable(t, "cannot connect to PostgreSQL at %s: %v", redact(base), err)
		return PG{}
	}
	defer conn.Close(context.Background())

	name := "burrow_test_" + randomHex(8)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		o.unavailable(t, "cannot create a test database on %s: %v", redact(base), err)
		return PG{}
	}
	t.Cleanup(func() { dropDatabase(t, base, name) })
	if dataDir == "" {
		// Needs superuser or pg_read_all_settings; without it DataDir stays empty.
		_ = conn.QueryRow(ctx, "SHOW data_directory").Scan(&dataDir)
	}
	dbURL, err := withDatabase(base, name)
	if err != nil {
		t.Fatalf("testsvc: %v", err)
	}
	return PG{URL: dbURL, DataDir: dataDir}
}

func dropDatabase(t testing.TB, base, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Errorf("testsvc: drop test database %s: %v", name, err)
		return
	}
	defer conn.Close(context.Background())
	// FORCE ends sessions a test left open (PostgreSQL 13+).
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		t.Errorf("testsvc: drop test database %s: %v", name, err)
	}
}

// withDatabase returns base with its database replaced by name. It accepts
// URLs and key=value connection strings.
func withDatabase(base, name string) (string, error) {
	if strings.HasPrefix(base, "postgres://") || strings.HasPrefix(base, "postgresql://") {
		u, err := url.Parse(base)
		if err != nil {
			return "", fmt.Errorf("parse %s: %w", redact(base), err)
		}
		u.Path = "/" + name
		q := u.Query()
		if q.Has("dbname") {
			q.Set("dbname", name)
			u.RawQuery = q.Encode()
		}
		return u.String(), nil
	}
	// A later dbname= overrides an earlier one.
	return base + " dbname=" + name, nil
}

// redact hides the password of a connection URL for messages.
func redact(s string) string {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" {
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.Redacted()
	}
	if strings.Contains(s, "password") {
		return "(connection string with a password)"
	}
	return s
}

// pgCluster is a throwaway PostgreSQL cluster owned by this process.
type pgCluster struct {
	url     string
	dataDir string
}

func (r *registry) cluster(o options) (*pgCluster, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pg != nil || r.pgErr != nil {
		return r.pg, r.pgErr
	}
	c, stop, err := startCluster(o)
	if err != nil {
		// Remembered so that every test of the process reports the same cause
		// without retrying a slow start.
		r.pgErr = err
		return nil, err
	}
	r.pg = c
	r.stops = append(r.stops, stop)
	return c, nil
}

// startCluster runs initdb and postgres in a temporary directory on a free
// loopback port. fsync keeps its default (on): benchmarks must measure a
// durable server. As root the server runs as the postgres user, since
// PostgreSQL refuses to run as root.
func startCluster(o options) (*pgCluster, func(), error) {
	p, err := newPGProc(o)
	if err != nil {
		return nil, nil, err
	}
	if err := p.Start(); err != nil {
		_ = os.RemoveAll(p.dir)
		return nil, nil, err
	}
	stop := func() {
		_ = p.Stop()
		_ = os.RemoveAll(p.dir)
	}
	return &pgCluster{url: p.baseURL(), dataDir: p.dataDir}, stop, nil
}

// PGProc is a throwaway PostgreSQL cluster on a fixed loopback port that
// a test can stop and start again ("the database restarts"), with one
// database for the test.
type PGProc struct {
	bin     string
	dir     string
	dataDir string
	port    int
	attr    *syscall.SysProcAttr

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// PostgresServer starts a PostgreSQL cluster private to this test (not the
// shared one, so stopping it disturbs no other test), creates a database
// in it, and stops it when the test ends. It needs the local PostgreSQL
// binaries even when RELAY_TEST_DATABASE_URL is set.
func PostgresServer(t testing.TB) *PGProc {
	t.Helper()
	return postgresServerWith(t, defaultOptions())
}

func postgresServerWith(t testing.TB, o options) *PGProc {
	t.Helper()
	p, err := newPGProc(o)
	if err == nil {
		if err = p.Start(); err != nil {
			_ = os.RemoveAll(p.dir)
		}
	}
	if err != nil {
		o.unavailable(t, "no throwaway PostgreSQL cluster: %v", err)
		return nil
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("testsvc: stop postgres: %v", err)
		}
		_ = os.RemoveAll(p.dir)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.baseURL())
	if err != nil {
		t.Fatalf("testsvc: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE test"); err != nil {
		t.Fatalf("testsvc: %v", err)
	}
	return p
}

// newPGProc runs initdb in a new temporary directory and picks a port.
func newPGProc(o options) (*PGProc, error) {
	initdb, err := findBinary("initdb", o.binDirs)
	if err != nil {
		return nil, err
	}
	postgres, err := findBinary("postgres", o.binDirs)
	if err != nil {
		return nil, err
	}
	sweepStale("burrow-pg-", time.Now())
	dir, err := os.MkdirTemp("", "burrow-pg-")
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*PGProc, error) {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	// The server user must be able to enter the directory.
	if err := os.Chmod(dir, 0o755); err != nil {
		return fail(err)
	}
	dataDir := filepath.Join(dir, "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		return fail(err)
	}
	attr := &syscall.SysProcAttr{Pdeathsig: syscall.SIGQUIT}
	if os.Geteuid() == 0 {
		cred, err := postgresCredential()
		if err != nil {
			return fail(err)
		}
		if err := os.Chown(dataDir, int(cred.Uid), int(cred.Gid)); err != nil {
			return fail(err)
		}
		attr.Credential = cred
	}
	cmd := exec.Command(initdb, "-D", dataDir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale")
	cmd.Dir = dir
	cmd.SysProcAttr = attr
	if out, err := cmd.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("initdb: %w: %s", err, lastLines(string(out), 5)))
	}
	port, err := freePort()
	if err != nil {
		return fail(err)
	}
	return &PGProc{bin: postgres, dir: dir, dataDir: dataDir, port: port, attr: attr}, nil
}

// baseURL is the cluster's postgres database, for administration.
func (p *PGProc) baseURL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.port)
}

// URL is the test's database in the cluster.
func (p *PGProc) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/test?sslmode=disable", p.port)
}

// Start starts the server on its port and waits until it accepts
// connections. It does nothing if the server runs.
func (p *PGProc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return nil
	}
	logPath := filepath.Join(p.dir, "postgres.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(p.bin, "-D", p.dataDir, "-p", strconv.Itoa(p.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=",
		"-c", "max_connections=200")
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = p.attr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, p.baseURL())
		cancel()
		if err == nil {
			_ = conn.Close(context.Background())
			break
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("postgres exited (port %d taken?): %s", p.port, lastLines(string(log), 5))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("postgres did not accept connections within 60s: %w", err)
		}
	}
	p.cmd, p.exited = cmd, exited
	return nil
}

// Stop stops the server with a fast shutdown (open sessions are ended,
// committed data is kept) and waits for it to exit. It does nothing if the
// server is stopped.
func (p *PGProc) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	var err error
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		err = errors.New("postgres ignored SIGINT; killed")
	}
	p.cmd, p.exited = nil, nil
	return err
}

func postgresCredential() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root needs a postgres user: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("postgres user ids: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
