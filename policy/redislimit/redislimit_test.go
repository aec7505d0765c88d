package redislimit

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/burrow-relay/burrow/policy"
)

func TestMain(m *testing.M) { testsvc.Main(m) }

// client is a Redis client for url, closed when the test ends.
func client(t *testing.T, url string) *redis.Client { return testsvc.RedisClient(t, url) }

func limiter(t *testing.T, cfg Config) *Limiter {
	t.Helper()
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func allow(t *testing.T, l policy.RateLimiter, key string) bool {
	t.Helper()
	ok, err := l.Allow(context.Background(), key)
	if err != nil {
		t.Fatalf("Allow(%q): %v", key, err)
	}
	return ok
}

func TestNewValidates(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"valid", Config{Client: c, Rate: 1, Burst: 1}, true},
		{"no client", Config{Rate: 1, Burst: 1}, false},
		{"zero rate", Config{Client: c, Rate: 0, Burst: 1}, false},
		{"negative rate", Config{Client: c, Rate: -1, Burst: 1}, false},
		{"zero burst", Config{Client: c, Rate: 1, Burst: 0}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := New(tc.cfg)
			if (err == nil) != tc.ok {
				t.Fatalf("New err = %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && l.prefix != DefaultPrefix {
				t.Fatalf("prefix = %q, want the default", l.prefix)
			}
		})
	}
}

// Exactly burst actions pass at once, then refusals, as policy.TokenBucket.
func TestBurstThenRefused(t *testing.T) {
	c := client(t, testsvc.Redis(t))
	for _, burst := range []int{1, 3, 20} {
		t.Run(fmt.Sprintf("burst=%d", burst), func(t *testing.T) {
			l := limiter(t, Config{Client: c, Rate: 0.001, Burst: burst})
			tb := policy.NewTokenBucket(0.001, burst, nil)
			key := t.Name()
			for i := range burst + 3 {
				got, want := allow(t, l, key), allow(t, tb, key)
				if got != want || got != (i < burst) {
					t.Fatalf("call %d with burst %d: Redis says %v, TokenBucket %v", i+1, burst, got, want)
				}
			}
		})
	}
}

func TestRefill(t *testing.T) {
	c := client(t, testsvc.Redis(t))
	const rate = 20.0 // one token per 50 ms
	l := limiter(t, Config{Client: c, Rate: rate, Burst: 2})
	allow(t, l, "k")
	allow(t, l, "k")
	emptied := time.Now()
	if allow(t, l, "k") {
		t.Fatal("third call within the burst window allowed")
	}
	for !allow(t, l, "k") {
		if time.Since(emptied) > 2*time.Second {
			t.Fatal("no token after 2 s at 20 per second")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if d := time.Since(emptied); d < 30*time.Millisecond {
		t.Fatalf("token back after %v, before a 50 ms refill", d)
	}
	// One token came back, not the burst.
	if allow(t, l, "k") {
		t.Fatal("two tokens back after one refill interval")
	}
}

// Limiters on separate clients share one bucket per key; other keys and
// prefixes are separate buckets.
func TestSharedBucket(t *testing.T) {
	url := testsvc.Redis(t)
	a := limiter(t, Config{Client: client(t, url), Rate: 0.001, Burst: 4})
	b := limiter(t, Config{Client: client(t, url), Rate: 0.001, Burst: 4})
	other := limiter(t, Config{Client: client(t, url), Rate: 0.001, Burst: 4, Prefix: "other:"})
	allowed := 0
	for i := range 10 {
		l := a
		if i%2 == 1 {
			l = b
		}
		if allow(t, l, "shared") {
			allowed++
		}
	}
	if allowed != 4 {
		t.Fatalf("two limiters allowed %d on one key, want the burst 4", allowed)
	}
	if !allow(t, a, "another key") || !allow(t, other, "shared") {
		t.Fatal("a different key or prefix shares the exhausted bucket")
	}
}

func TestConcurrentCallsNeverExceedBurst(t *testing.T) {
	url := testsvc.Redis(t)
	const burst = 50
	var mu sync.Mutex
	allowed := 0
	var wg sync.WaitGroup
	for range 4 {
		l := limiter(t, Config{Client: client(t, url), Rate: 0.001, Burst: burst})
		wg.Go(func() {
			for range 40 {
				ok, err := l.Allow(context.Background(), "k")
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if allowed != burst {
		t.Fatalf("160 concurrent calls allowed %d, want exactly %d", allowed, burst)
	}
}

// A bucket key carries a TTL of its time to refill and then disappears.
func TestKeysExpire(t *testing.T) {
	c := client(t, testsvc.Redis(t))
	ctx := context.Background()
	slow := limiter(t, Config{Client: c, Rate: 0.5, Burst: 3, Prefix: "t:"})
	allow(t, slow, "slow")
	ttl, err := c.PTTL(ctx, "t:slow").Result()
	if err != nil {
		t.Fatal(err)
	}
	// One token used at 0.5/s refills in 2 s.
	if ttl <= 0 || ttl > 2*time.Second {
		t.Fatalf("PTTL = %v, want in (0, 2s]", ttl)
	}
	fast := limiter(t, Config{Client: c, Rate: 100, Burst: 1, Prefix: "t:"})
	allow(t, fast, "fast")
	deadline := time.Now().Add(2 * time.Second)
	for {
		n, err := c.Exists(ctx, "t:fast").Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("idle key still there 2 s after a 10 ms refill")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A vanished key is a full bucket.
	if !allow(t, fast, "fast") {
		t.Fatal("expired key did not come back full")
	}
}

func TestAllowFailsWithRedisDown(t *testing.T) {
	srv := testsvc.RedisServer(t)
	l := limiter(t, Config{Client: client(t, srv.URL()), Rate: 1, Burst: 1})
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	ok, err := l.Allow(context.Background(), "k")
	if err == nil || ok {
		t.Fatalf("Allow with Redis down = %v, %v; want false and an error", ok, err)
	}
	if !strings.HasPrefix(err.Error(), "redislimit: ") {
		t.Fatalf("error %q is not wrapped by the package", err)
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) count(sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.b.String(), sub)
}

func TestFallback(t *testing.T) {
	srv := testsvc.RedisServer(t)
	c := client(t, srv.URL())
	primary := limiter(t, Config{Client: c, Rate: 0.001, Burst: 1})
	secondary := policy.NewTokenBucket(0.001, 3, nil)
	var logs syncBuffer
	f := Fallback(primary, secondary, slog.New(slog.NewTextHandler(&logs, nil))).(*fallback)
	f.retry = 20 * time.Millisecond

	// Up: the primary's burst of 1 decides, not the secondary's 3.
	if !allow(t, f, "k") || allow(t, f, "k") {
		t.Fatal("with Redis up the answers are not the primary's")
	}

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		time.Sleep(10 * time.Millisecond) // spans several retry intervals
		if got := allow(t, f, "k"); got != (i < 3) {
			t.Fatalf("Redis down, call %d: %v; want the secondary's burst of 3", i+1, got)
		}
	}
	if n := logs.count("level=WARN"); n != 1 {
		t.Fatalf("%d warnings for one outage, want 1", n)
	}

	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	// The restarted server is empty; the primary is back once a call
	// leaves its bucket key there.
	deadline := time.Now().Add(10 * time.Second)
	for {
		allow(t, f, "k")
		n, err := c.Exists(context.Background(), DefaultPrefix+"k").Result()
		if err == nil && n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("primary not used again after Redis came back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if allow(t, f, "k") {
		t.Fatal("after Redis came back the answers are not the primary's")
	}
	if n := logs.count("level=INFO"); n != 1 {
		t.Fatalf("%d recovery messages, want 1", n)
	}
	if strings.Contains(logs.b.String(), `"k"`) || strings.Contains(logs.b.String(), "key=k") {
		t.Fatal("the limited key was logged")
	}
}

// A caller whose context ended gets the error, not the secondary's answer.
func TestFallbackCanceledContext(t *testing.T) {
	c := client(t, testsvc.Redis(t))
	primary := limiter(t, Config{Client: c, Rate: 0.001, Burst: 1})
	f := Fallback(primary, policy.NewTokenBucket(0.001, 1, nil), nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if ok, err := f.Allow(ctx, "k"); ok || err == nil {
		t.Fatalf("Allow with a canceled context = %v, %v", ok, err)
	}
}
