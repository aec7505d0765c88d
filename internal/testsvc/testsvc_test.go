package testsvc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

func TestMain(m *testing.M) { Main(m) }

func connectPG(t *testing.T, u string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatalf("connect %s: %v", redact(u), err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestPostgres(t *testing.T) {
	ctx := context.Background()
	a, b := Postgres(t), Postgres(t)
	if a.URL == b.URL {
		t.Fatalf("two calls gave the same database %s", a.URL)
	}
	ca, cb := connectPG(t, a.URL), connectPG(t, b.URL)
	for _, tc := range []struct {
		name string
		conn *pgx.Conn
	}{{"first", ca}, {"second", cb}} {
		var n int
		if err := tc.conn.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&n); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if n != 0 {
			t.Errorf("%s database has %d tables, want 0", tc.name, n)
		}
	}
	if _, err := ca.Exec(ctx, `CREATE TABLE only_in_a (x int)`); err != nil {
		t.Fatal(err)
	}
	var exists bool
	if err := cb.QueryRow(ctx, `SELECT to_regclass('only_in_a') IS NOT NULL`).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Error("a table created in one test database is visible in the other")
	}
	if a.DataDir != "" {
		if _, err := os.Stat(filepath.Join(a.DataDir, "PG_VERSION")); err != nil {
			t.Errorf("DataDir %s is not a cluster directory: %v", a.DataDir, err)
		}
	}
}

// TestPostgresFromEnv points the URL variable at a server (the one the
// default path gives) and checks that databases are created there and
// dropped at cleanup.
func TestPostgresFromEnv(t *testing.T) {
	server := Postgres(t)
	o := defaultOptions()
	o.getenv = envMap(map[string]string{EnvDatabaseURL: server.URL})
	var name string
	t.Run("inner", func(t *testing.T) {
		pg := postgresWith(t, o)
		conn := connectPG(t, pg.URL)
		if err := conn.QueryRow(context.Background(), `SELECT current_database()`).Scan(&name); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(name, "burrow_test_") {
			t.Errorf("database %q lacks the test prefix", name)
		}
	})
	conn := connectPG(t, server.URL)
	var n int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_database WHERE datname = $1`, name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("database %s still exists after its test ended", name)
	}
}

func TestRedis(t *testing.T) {
	ctx := context.Background()
	urls := []string{Redis(t), Redis(t)}
	if urls[0] == urls[1] {
		t.Fatalf("two calls gave the same database %s", urls[0])
	}
	var clients []*redis.Client
	for _, u := range urls {
		opts, err := redis.ParseURL(u)
		if err != nil {
			t.Fatal(err)
		}
		c := redis.NewClient(opts)
		t.Cleanup(func() { c.Close() })
		n, err := c.DBSize(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%s holds %d keys, want 0", u, n)
		}
		clients = append(clients, c)
	}
	if err := clients[0].Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := clients[1].Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Errorf("key set in one test database is visible in the other (n=%d, err=%v)", n, err)
	}
}

// TestRedisClaimsAreExclusive claims databases concurrently from one base
// URL, as parallel test processes do, and checks no number is handed out
// twice.
func TestRedisClaimsAreExclusive(t *testing.T) {
	p := RedisServer(t)
	ctx := context.Background()
	const n = 20
	var (
		mu   sync.Mutex
		seen = map[string]bool{}
		wg   sync.WaitGroup
	)
	for range n {
		wg.Go(func() {
			u, release, err := claimRedisDB(ctx, p.URL())
			if err != nil {
				t.Error(err)
				return
			}
			t.Cleanup(func() { _ = release(ctx) })
			mu.Lock()
			defer mu.Unlock()
			if seen[u] {
				t.Errorf("%s handed out twice", u)
			}
			seen[u] = true
		})
	}
	wg.Wait()
	if len(seen) != n {
		t.Errorf("got %d distinct databases, want %d", len(seen), n)
	}
}

func TestRedisSkipsNonEmptyDatabase(t *testing.T) {
	p := RedisServer(t)
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: p.Addr(), DB: 1})
	t.Cleanup(func() { c.Close() })
	if err := c.Set(ctx, "someone-else", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	u, release, err := claimRedisDB(ctx, p.URL())
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("redis://%s/2", p.Addr()); u != want {
		t.Errorf("claimed %s, want %s (database 1 is in use)", u, want)
	}
	if err := release(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.Exists(ctx, "someone-else").Result(); n != 1 {
		t.Error("claiming touched a database that was not empty")
	}
}

func TestRedisServerStopStart(t *testing.T) {
	p := RedisServer(t)
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("fresh server: %v", err)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING succeeded on a stopped server")
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("restarted server on the same address: %v", err)
	}
}

// fakeTB records how a helper gave up. Fatal and Skip end the goroutine as
// the real ones do.
type fakeTB struct {
	testing.TB
	mu      sync.Mutex
	fatal   bool
	skipped bool
	msg     string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatal(args ...any) {
	f.mu.Lock()
	f.fatal, f.msg = true, fmt.Sprint(args...)
	f.mu.Unlock()
	runtime.Goexit()
}
func (f *fakeTB) Skip(args ...any) {
	f.mu.Lock()
	f.skipped, f.msg = true, fmt.Sprint(args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestUnavailableServices(t *testing.T) {
	helpers := map[string]func(testing.TB, options){
		"Postgres":    func(t testing.TB, o options) { postgresWith(t, o) },
		"Redis":       func(t testing.TB, o options) { redisWith(t, o) },
		"RedisServer": func(t testing.TB, o options) { redisServerWith(t, o) },
	}
	for name, call := range helpers {
		for _, tc := range []struct {
			require   string
			wantFatal bool
			wantWord  string
		}{
			{require: "", wantFatal: false, wantWord: "not found"},
			{require: "1", wantFatal: true, wantWord: EnvRequireServices},
		} {
			t.Run(fmt.Sprintf("%s/require=%q", name, tc.require), func(t *testing.T) {
				o := options{
					getenv:  envMap(map[string]string{EnvRequireServices: tc.require}),
					binDirs: []string{t.TempDir()},
					reg:     &registry{},
				}
				f := &fakeTB{TB: t}
				done := make(chan struct{})
				go func() { defer close(done); call(f, o) }()
				<-done
				if f.fatal != tc.wantFatal || f.skipped == tc.wantFatal {
					t.Errorf("fatal=%v skipped=%v, want fatal=%v", f.fatal, f.skipped, tc.wantFatal)
				}
				if !strings.Contains(f.msg, "SERVICE UNAVAILABLE") || !strings.Contains(f.msg, tc.wantWord) {
					t.Errorf("message %q should be loud and contain %q", f.msg, tc.wantWord)
				}
			})
		}
	}
}

func TestUnreachableURLFailsWhenRequired(t *testing.T) {
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		call func(testing.TB, options)
		env  string
		url  string
	}{
		{"Postgres", func(t testing.TB, o options) { postgresWith(t, o) }, EnvDatabaseURL,
			fmt.Sprintf("postgres://u:secret@127.0.0.1:%d/x?connect_timeout=2", port)},
		{"Redis", func(t testing.TB, o options) { redisWith(t, o) }, EnvRedisURL,
			fmt.Sprintf("redis://:secret@127.0.0.1:%d/0", port)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := options{
				getenv: envMap(map[string]string{EnvRequireServices: "1", tc.env: tc.url}),
				reg:    &registry{},
			}
			f := &fakeTB{TB: t}
			done := make(chan struct{})
			go func() { defer close(done); tc.call(f, o) }()
			<-done
			if !f.fatal {
				t.Errorf("unreachable %s with the require flag did not fail (skipped=%v)", tc.name, f.skipped)
			}
			if strings.Contains(f.msg, "secret") {
				t.Errorf("message leaks the password: %q", f.msg)
			}
		})
	}
}

func TestWithDatabase(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://u:p@h:5432/test?sslmode=disable", "postgres://u:p@h:5432/x?sslmode=disable"},
		{"postgresql://h/", "postgresql://h/x"},
		{"host=h user=u dbname=test", "host=h user=u dbname=test dbname=x"},
	} {
		got, err := withDatabase(tc.in, "x")
		if err != nil || got != tc.want {
			t.Errorf("withDatabase(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestSweepStale(t *testing.T) {
	old := time.Now().Add(-2 * staleAge)
	mk := func(name, pid string, mtime time.Time) string {
		dir, err := os.MkdirTemp("", "burrow-sweeptest-"+name+"-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if pid != "" {
			if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "data", "postmaster.pid"), []byte(pid+"\n/data\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chtimes(dir, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	cases := []struct {
		name     string
		dir      string
		wantKept bool
	}{
		{"old, no server", mk("dead", "", old), false},
		{"old, server pid gone", mk("gone", "999999999", old), false},
		{"old, server running", mk("live", strconv.Itoa(os.Getpid()), old), true},
		{"recent, no server", mk("recent", "", time.Now()), true},
		{"old, redis-server running", func() string {
			dir := mk("redis", "", old)
			if err := os.WriteFile(filepath.Join(dir, serverPidFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(dir, old, old); err != nil {
				t.Fatal(err)
			}
			return dir
		}(), true},
	}
	sweepStale("burrow-sweeptest-", time.Now())
	for _, tc := range cases {
		_, err := os.Stat(tc.dir)
		if kept := err == nil; kept != tc.wantKept {
			t.Errorf("%s: kept = %v, want %v", tc.name, kept, tc.wantKept)
		}
	}
}

// TestPostgresServerStopStart: a private cluster serves its database,
// refuses connections while stopped, and serves the same data after
// Start.
func TestPostgresServerStopStart(t *testing.T) {
	p := PostgresServer(t)
	ctx := context.Background()
	exec := func(sql string) error {
		c, err := pgx.Connect(ctx, p.URL())
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		_, err = c.Exec(ctx, sql)
		return err
	}
	if err := exec(`CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)`); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := exec(`SELECT 1`); err == nil {
		t.Fatal("connected to a stopped server")
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx, p.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var v int
	if err := c.QueryRow(ctx, `SELECT v FROM kept`).Scan(&v); err != nil || v != 42 {
		t.Fatalf("after a restart: %d, %v", v, err)
	}
}

// TestSmallFSFillsUp: the file system SmallFS mounts refuses writes past
// its size with ENOSPC.
func TestSmallFSFillsUp(t *testing.T) {
	dir := SmallFS(t, "1m")
	err := os.WriteFile(filepath.Join(dir, "big"), make([]byte, 2<<20), 0o600)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("writing 2 MiB into 1 MiB: %v, want ENOSPC", err)
	}
}
