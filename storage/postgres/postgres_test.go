package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/burrow-relay/burrow/storage"
	"github.com/burrow-relay/burrow/storage/postgres"
	"github.com/burrow-relay/burrow/storage/storetest"
)

func TestMain(m *testing.M) { testsvc.Main(m) }

func open(t testing.TB, u string) *postgres.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := postgres.Open(ctx, postgres.Config{URL: u, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// testLogger sends the store's logs to the test's output.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		pg := testsvc.Postgres(t)
		return func(t *testing.T) storage.Store { return open(t, pg.URL) }
	})
}

func TestMigrationsIdempotentAndRaceSafe(t *testing.T) {
	pg := testsvc.Postgres(t)
	ctx := context.Background()

	// Several instances start together on an empty database.
	const n = 4
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			s, err := postgres.Open(ctx, postgres.Config{URL: pg.URL})
			if err == nil {
				err = s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent Open: %v", err)
	}
	// And again on a migrated database, with data in it.
	s := open(t, pg.URL)
	author := storetest.NewAuthor(t)
	ev := author.Event(t, 1, nostr.Now(), nil, "kept across reopen")
	if _, err := s.Save(ctx, ev); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, pg.URL)
	if n, err := s2.Count(ctx, nostr.Filter{IDs: []string{ev.ID}}); err != nil || n != 1 {
		t.Fatalf("after reopening: count %d, %v; want 1", n, err)
	}

	conn, err := pgx.Connect(ctx, pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var rows, versions int
	if err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT version) FROM schema_migrations`).Scan(&rows, &versions); err != nil {
		t.Fatal(err)
	}
	if rows == 0 || rows != versions {
		t.Errorf("schema_migrations has %d rows for %d versions; want one row per version", rows, versions)
	}
}

func TestOpenErrors(t *testing.T) {
	pg := testsvc.Postgres(t)
	base, err := url.Parse(pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	const secret = "s3cr3t-pw"

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := l.Addr().(*net.TCPAddr).Port
	l.Close()

	withUser := func(u url.URL, user, pw string) url.URL {
		u.User = url.UserPassword(user, pw)
		return u
	}
	unreachable := withUser(*base, "postgres", secret)
	unreachable.Host = fmt.Sprintf("127.0.0.1:%d", closedPort)
	missing := withUser(*base, base.User.Username(), secret)
	missing.Path = "/no_such_database_burrow"
	noRole := withUser(*base, "burrow_no_such_role", secret)
	badPW := url.URL{Scheme: "postgres", User: url.UserPassword("u", secret), Host: rejectingServer(t), Path: "/db"}

	cases := []struct {
		name     string
		url      string
		want     error
		contains string
		skip     string
	}{
		{name: "unreachable", url: unreachable.String(), want: postgres.ErrUnreachable, contains: "unreachable"},
		{name: "missing database", url: missing.String(), want: postgres.ErrNoDatabase, contains: "does not exist"},
		{name: "bad password", url: badPW.String(), want: postgres.ErrAuthentication, contains: "authentication failed"},
		{name: "no such role", url: noRole.String(), want: postgres.ErrAuthentication, contains: "authentication failed"},
		{name: "bad URL", url: "postgres://u:" + secret + "@127.0.0.1:notaport/x", want: postgres.ErrBadURL, contains: "invalid connection string: invalid port"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := postgres.Open(ctx, postgres.Config{URL: tc.url, ConnectTimeout: 3 * time.Second})
			if err == nil {
				s.Close()
				t.Fatalf("Open succeeded")
			}
			msg := err.Error()
			if !errors.Is(err, tc.want) {
				t.Errorf("error %q does not match %v", msg, tc.want)
			}
			if strings.Contains(msg, secret) {
				t.Errorf("error leaks the password: %q", msg)
			}
			if !strings.Contains(msg, postgres.RedactURL(tc.url)) {
				t.Errorf("error %q does not name the redacted URL %q", msg, postgres.RedactURL(tc.url))
			}
			if !strings.Contains(msg, tc.contains) || strings.Contains(msg, "\n") {
				t.Errorf("error %q should be one line containing %q", msg, tc.contains)
			}
		})
	}
}

// rejectingServer speaks just enough of the PostgreSQL protocol to ask for a
// password and refuse it, as a server with password auth does (the test
// clusters trust every local user).
func rejectingServer(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				be := pgproto3.NewBackend(c, c)
				msg, err := be.ReceiveStartupMessage()
				if err != nil {
					return
				}
				if _, ok := msg.(*pgproto3.SSLRequest); ok {
					c.Write([]byte("N"))
					if _, err := be.ReceiveStartupMessage(); err != nil {
						return
					}
				}
				be.Send(&pgproto3.AuthenticationCleartextPassword{})
				if err := be.Flush(); err != nil {
					return
				}
				be.SetAuthType(pgproto3.AuthTypeCleartextPassword)
				if _, err := be.Receive(); err != nil {
					return
				}
				be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "28P01", Message: `password authentication failed for user "u"`})
				_ = be.Flush()
			}()
		}
	}()
	return l.Addr().String()
}

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://u:pw@h:5432/db", "postgres://u:xxxxx@h:5432/db"},
		{"postgres://u@h/db", "postgres://u@h/db"},
		{"postgresql://h/db?password=pw&sslmode=disable", "postgresql://h/db?password=xxxxx&sslmode=disable"},
		{"host=h user=u password=pw dbname=d", "host=h user=u password=xxxxx dbname=d"},
		{"host=h password='p w' dbname=d", "host=h password=xxxxx dbname=d"},
		{"postgres://u:p@w@h:bad/db", "postgres://u:xxxxx@h:bad/db"},
		{"redis://:pw@127.0.0.1:6379/0", "redis://:xxxxx@127.0.0.1:6379/0"},
		{"rediss://user:pw@h:6380", "rediss://user:xxxxx@h:6380"},
	} {
		if got := postgres.RedactURL(tc.in); got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// SchemaVersion reads where a database stands without migrating it.
func TestSchemaVersion(t *testing.T) {
	ctx := context.Background()
	url := testsvc.Postgres(t).URL
	current, latest, err := postgres.SchemaVersion(ctx, url)
	if err != nil || current != 0 || latest == 0 {
		t.Fatalf("empty database: %d, %d, %v; want 0, > 0, nil", current, latest, err)
	}
	if again, _, _ := postgres.SchemaVersion(ctx, url); again != 0 {
		t.Fatalf("SchemaVersion migrated the database to %d", again)
	}
	s, err := postgres.Open(ctx, postgres.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if current, _, err = postgres.SchemaVersion(ctx, url); err != nil || current != latest {
		t.Fatalf("after Open: %d, %v; want %d", current, err, latest)
	}
}
