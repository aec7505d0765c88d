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
	initdb, err := findBinary("initdb", o.binDirs)
	if err != nil {
		return nil, nil, err
	}
	postgres, err := findBinary("postgres", o.binDirs)
	if err != nil {
		return nil, nil, err
	}
	sweepStale("burrow-pg-", time.Now())
	dir, err := os.MkdirTemp("", "burrow-pg-")
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*pgCluster, func(), error) {
		_ = os.RemoveAll(dir)
		return nil, nil, err
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
	logPath := filepath.Join(dir, "postgres.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return fail(err)
	}
	defer logFile.Close()
	cmd = exec.Command(postgres, "-D", dataDir, "-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=",
		"-c", "max_connections=200")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("start postgres: %w", err))
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGINT) // fast shutdown
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		_ = os.RemoveAll(dir)
	}

	u := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, u)
		cancel()
		if err == nil {
			_ = conn.Close(context.Background())
			break
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(logPath)
			stop()
			return nil, nil, fmt.Errorf("postgres exited: %s", lastLines(string(log), 5))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return nil, nil, fmt.Errorf("postgres did not accept connections within 60s: %w", err)
		}
	}
	return &pgCluster{url: u, dataDir: dataDir}, stop, nil
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
