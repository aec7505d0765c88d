package testsvc

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// claimPrefix names the keys, in the base URL's database, that record which
// database number a test holds. SET NX makes a claim exclusive across
// processes; the TTL frees claims of a process that died.
const (
	claimPrefix = "burrow:testsvc:claim:"
	claimTTL    = 2 * time.Hour
)

// Redis returns a URL of a Redis database that is empty and private to this
// test, flushed and released when the test ends. With RELAY_TEST_REDIS_URL it
// claims a free, empty database number on that server (never the URL's own
// database, which holds the claims); otherwise it uses a throwaway
// redis-server shared by the process (see Main).
func Redis(t testing.TB) string {
	t.Helper()
	return redisWith(t, defaultOptions())
}

// RedisClient returns a client for url (from Redis or a RedisProc), closed
// when the test ends.
func RedisClient(t testing.TB, url string) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("testsvc: %v", err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func redisWith(t testing.TB, o options) string {
	t.Helper()
	base := o.getenv(EnvRedisURL)
	if base == "" {
		p, err := o.reg.redisServer(o)
		if err != nil {
			o.unavailable(t, "no Redis: %s is unset and no throwaway redis-server could start: %v", EnvRedisURL, err)
			return ""
		}
		base = p.URL()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u, release, err := claimRedisDB(ctx, base)
	if err != nil {
		o.unavailable(t, "no private Redis database on %s: %v", redact(base), err)
		return ""
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := release(ctx); err != nil {
			t.Errorf("testsvc: release Redis database: %v", err)
		}
	})
	return u
}

// releaseScript deletes a claim only if this process still holds it.
var releaseScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

// claimRedisDB finds a database number that no one has claimed and that is
// empty, claims it, and returns its URL and a function that flushes and
// releases it.
func claimRedisDB(ctx context.Context, base string) (string, func(context.Context) error, error) {
	opts, err := redis.ParseURL(base)
	if err != nil {
		return "", nil, fmt.Errorf("parse URL: %w", err)
	}
	reg := redis.NewClient(opts)
	defer reg.Close()
	if err := reg.Ping(ctx).Err(); err != nil {
		return "", nil, fmt.Errorf("ping: %w", err)
	}
	databases := 16
	if v, err := reg.ConfigGet(ctx, "databases").Result(); err == nil {
		if n, err := strconv.Atoi(v["databases"]); err == nil && n > 0 {
			databases = n
		}
	}
	token := fmt.Sprintf("%d-%s", os.Getpid(), randomHex(8))
	for db := 0; db < databases; db++ {
		if db == opts.DB {
			continue
		}
		key := claimPrefix + strconv.Itoa(db)
		ok, err := reg.SetNX(ctx, key, token, claimTTL).Result()
		if err != nil {
			return "", nil, fmt.Errorf("claim database %d: %w", db, err)
		}
		if !ok {
			continue
		}
		dbOpts := *opts
		dbOpts.DB = db
		c := redis.NewClient(&dbOpts)
		n, err := c.DBSize(ctx).Result()
		if err != nil || n != 0 {
			// Not ours to use: someone else's data (or a crashed run's).
			_ = c.Close()
			_ = releaseScript.Run(ctx, reg, []string{key}, token).Err()
			if err != nil {
				return "", nil, fmt.Errorf("size of database %d: %w", db, err)
			}
			continue
		}
		release := func(ctx context.Context) error {
			defer c.Close()
			ferr := c.FlushDB(ctx).Err()
			r := redis.NewClient(opts)
			defer r.Close()
			return errors.Join(ferr, releaseScript.Run(ctx, r, []string{key}, token).Err())
		}
		u, err := redisURLWithDB(base, db)
		if err != nil {
			_ = release(ctx)
			return "", nil, err
		}
		return u, release, nil
	}
	return "", nil, fmt.Errorf("all %d databases are claimed or not empty", databases-1)
}

func redisURLWithDB(base string, db int) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("parse Redis URL: %w", err)
	}
	if u.Scheme == "unix" {
		q := u.Query()
		q.Set("db", strconv.Itoa(db))
		u.RawQuery = q.Encode()
	} else {
		u.Path = "/" + strconv.Itoa(db)
	}
	return u.String(), nil
}

func (r *registry) redisServer(o options) (*RedisProc, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.redis != nil || r.redisErr != nil {
		return r.redis, r.redisErr
	}
	p, err := newRedisProc(o)
	if err == nil {
		err = p.Start()
	}
	if err != nil {
		r.redisErr = err
		return nil, err
	}
	r.redis = p
	r.stops = append(r.stops, func() { _ = p.Stop(); _ = os.RemoveAll(p.dir) })
	return p, nil
}

// RedisProc is a throwaway redis-server on a fixed loopback port that a test
// can stop and start again ("Redis down, then back").
type RedisProc struct {
	bin  string
	dir  string
	port int

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// RedisServer starts a redis-server private to this test (not the shared
// one, so stopping it disturbs no other test) and stops it when the test
// ends. It needs the local redis-server binary even when
// RELAY_TEST_REDIS_URL is set.
func RedisServer(t testing.TB) *RedisProc {
	t.Helper()
	return redisServerWith(t, defaultOptions())
}

func redisServerWith(t testing.TB, o options) *RedisProc {
	t.Helper()
	p, err := newRedisProc(o)
	if err == nil {
		err = p.Start()
	}
	if err != nil {
		o.unavailable(t, "no throwaway redis-server: %v", err)
		return nil
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("testsvc: stop redis-server: %v", err)
		}
		_ = os.RemoveAll(p.dir)
	})
	return p
}

func newRedisProc(o options) (*RedisProc, error) {
	bin, err := findBinary("redis-server", o.binDirs)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	sweepStale("burrow-redis-", time.Now())
	dir, err := os.MkdirTemp("", "burrow-redis-")
	if err != nil {
		return nil, err
	}
	return &RedisProc{bin: bin, dir: dir, port: port}, nil
}

// URL is the server's database 0.
func (p *RedisProc) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", p.port) }

// Addr is the server's host:port.
func (p *RedisProc) Addr() string { return fmt.Sprintf("127.0.0.1:%d", p.port) }

// Start starts the server on its port and waits until it answers PING. It
// does nothing if the server runs.
func (p *RedisProc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return nil
	}
	cmd := exec.Command(p.bin,
		"--port", strconv.Itoa(p.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no",
		"--databases", "1024", "--dir", p.dir, "--protected-mode", "no")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	c := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			break
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited at start (port %d taken?): %w", p.port, err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server did not answer within 20s: %w", err)
		}
	}
	p.cmd, p.exited = cmd, exited
	// Marks the directory as in use for sweepStale in other processes.
	_ = os.WriteFile(filepath.Join(p.dir, serverPidFile), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644)
	return nil
}

// Stop stops the server and waits for it to exit. Its data is lost (no
// persistence). It does nothing if the server is stopped.
func (p *RedisProc) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		err = errors.New("redis-server ignored SIGTERM; killed")
	}
	p.cmd, p.exited = nil, nil
	return err
}
