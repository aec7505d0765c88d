// Package postgres is the PostgreSQL backend of storage.Store, on
// github.com/jackc/pgx/v5. Several relay instances may share one database:
// every rule of the contract is enforced inside PostgreSQL (unique indexes,
// counter rows and advisory locks), never by an in-process lock.
//
// Saves and commit-slot claims from all goroutines go to a few writers
// (Config.Writers) that commit them in groups: each group is one
// transaction, sent in one round trip, in which the plain events (no
// replacement, deletion, KeyPackage or gift wrap: saveArgs.plain) are one
// call of the set-based burrow_save_plain SQL function, and every other
// event is one call of burrow_save (a claim, of burrow_claim_slot); both
// apply the refusal checks of burrow_refused. Callers are answered after
// COMMIT. With fsync and synchronous_commit on, this turns one WAL flush and
// a few round trips per event into one of each per group.
//
// KeyPackages (kinds 443 and 30443) are kept in a table of their own
// without tag-value index rows, their content in 256 small partitions by
// author, and a partition is rewritten (VACUUM FULL) shortly after
// KeyPackage deletions in it so that their bytes leave the files (see
// docs/keypackage-scrub.md); Query and Count read both tables.
// PostgreSQL's WAL, replicas and backups are outside that guarantee.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/burrow-relay/burrow/storage"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Config configures Open.
type Config struct {
	// URL is the PostgreSQL connection string (postgres://user:pass@host/db
	// or key=value form). Required.
	URL string
	// Logger receives operational logs (never event content). Nil discards.
	Logger *slog.Logger
	// MaxConns caps the connection pool: the save writers hold one each, the
	// rest serve queries, counts and deletions. 0 means 10.
	MaxConns int32
	// MaxBatch caps how many saves one group commit holds. 0 means 256.
	MaxBatch int
	// Writers is how many group-commit writers run, each on its own
	// connection. More writers let PostgreSQL use more cores and overlap one
	// group's execution with another's WAL flush, but make groups smaller,
	// which costs more CPU per event (BenchmarkSave reports both). Saves are
	// routed by group ("h") or author, so events that lock the same rows meet
	// in one writer. 0 means 1: since a group's plain events are saved in one
	// statement (migration 10), one writer's larger groups cost less than
	// two writers' overlap gains, except for saves that are one burrow_save
	// call each, such as KeyPackage replacements (docs/benchmarks.md,
	// "Session 9").
	Writers int
	// ConnectTimeout bounds each connection attempt, including Open's first
	// one. 0 means 10 seconds.
	ConnectTimeout time.Duration
	// Now is the clock for NIP-40 expiration; nil means time.Now.
	Now func() time.Time
	// KeyPackageRewriteWithin bounds how long after a KeyPackage deletion
	// (by any instance on the database) the content partition that held it
	// is rewritten, so the deleted bytes leave its files; deletions in a
	// partition within that time share one rewrite. 0 means 10 seconds
	// (DESIGN.md). The rewriter rewrites one partition at a time and rests
	// as long as each rewrite took, so under a sustained high deletion rate
	// it falls behind the bound (it logs a warning): 250,000 KeyPackages
	// with 50 deletions a second took up to 45 s (docs/keypackage-scrub.md).
	KeyPackageRewriteWithin time.Duration
	// KeyPackageRewriteLockWait bounds how long a rewrite waits for its
	// exclusive lock on one content partition (operations on that
	// partition queue behind a waiting rewrite); it gives up and retries
	// later instead. 0 means 25 ms.
	KeyPackageRewriteLockWait time.Duration
	// LockTimeout bounds, inside PostgreSQL, how long any statement of the
	// store waits for a lock (a commit slot held by another claim, rows a
	// concurrent save or deletion holds). A statement that would wait
	// longer fails and its transaction writes nothing (storage.ErrBusy),
	// so an operation's outcome never depends on when a caller gives up.
	// 0 means 5 seconds; negative means no bound.
	LockTimeout time.Duration
	// DisableSequencing is for benchmarks: kind 445 events are stored
	// without seq numbers, as on a plain relay (Save answers Seq 0).
	// GroupLog, LastSeq and ClaimSlot then fail with an error saying so.
	DisableSequencing bool
	// OnCommit, if set, is called after each group commit of saves (and
	// slot claims) a writer makes: writes is how many saves it held, took
	// the group's round trip to PostgreSQL, from sending its statements to
	// the commit (with its WAL flush at synchronous_commit on). Every
	// caller of the group waited about that long for its answer, plus the
	// time its save queued. A group run again after a failure is reported
	// once, when it commits; one saved one by one, as each save commits.
	// It runs on the writer's goroutine, so it must return quickly (update
	// a metric); it must not call the Store.
	OnCommit func(writes int, took time.Duration)

	// poolHook, for this package's tests, adjusts the pool's configuration
	// before it connects (to watch every statement's plan); chunkHook is
	// told how long each chunk of a long deletion took; chunkCap, when
	// positive, caps the events of such a chunk.
	poolHook  func(*pgxpool.Config)
	chunkHook func(time.Duration)
	chunkCap  int
}

// Reasons Open fails, matched with errors.Is on its error.
var (
	ErrUnreachable    = errors.New("server unreachable")
	ErrAuthentication = errors.New("authentication failed")
	ErrNoDatabase     = errors.New("database does not exist")
	ErrBadURL         = errors.New("invalid connection string")
)

// OpenError is Open's error: one line naming the URL without its password
// and saying why.
type OpenError struct {
	URL    string // redacted
	Reason string
	Kind   error // one of ErrUnreachable, ErrAuthentication, ErrNoDatabase, ErrBadURL, or nil
	Err    error
}

func (e *OpenError) Error() string {
	return "postgres: cannot open " + e.URL + ": " + e.Reason
}

func (e *OpenError) Unwrap() []error {
	if e.Kind == nil {
		return []error{e.Err}
	}
	return []error{e.Kind, e.Err}
}

// Store is a storage.Store on PostgreSQL.
type Store struct {
	pool     *pgxpool.Pool
	log      *slog.Logger
	now      func() time.Time
	maxBatch int
	noSeq    bool                                 // Config.DisableSequencing
	onCommit func(writes int, took time.Duration) // Config.OnCommit

	mu      sync.RWMutex // guards closed and sends on queues
	closed  bool
	queues  []chan *saveReq // one per writer
	writers sync.WaitGroup

	rewrite   *rewriter
	chunkHook func(time.Duration) // Config.chunkHook
	chunkCap  int                 // Config.chunkCap
}

var _ storage.Store = (*Store)(nil)

// Open connects, applies the schema migrations that are missing and starts
// the save writer.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	redacted := RedactURL(cfg.URL)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.URL == "" {
		return nil, &OpenError{URL: `""`, Reason: "no database URL given", Kind: ErrBadURL, Err: ErrBadURL}
	}
	pcfg, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		reason := err.Error()
		if _, after, ok := strings.Cut(reason, "`: "); ok {
			reason = after // pgconn repeats the whole string before "`: "
		}
		return nil, &OpenError{URL: redacted, Reason: "invalid connection string: " + scrub(reason, cfg.URL), Kind: ErrBadURL, Err: err}
	}
	pcfg.MaxConns = cfg.MaxConns
	if pcfg.MaxConns <= 0 {
		pcfg.MaxConns = 10
	}
	if least := int32(max(cfg.Writers, 2)) + 1; pcfg.MaxConns < least {
		pcfg.MaxConns = least // the writers hold one each
	}
	lockTimeout := cfg.LockTimeout
	if lockTimeout == 0 {
		lockTimeout = 5 * time.Second
	}
	// 0 in PostgreSQL means no bound.
	pcfg.ConnConfig.RuntimeParams["lock_timeout"] = strconv.FormatInt(max(lockTimeout.Milliseconds(), 0), 10)
	// A caller's context that ends while a statement runs (a COUNT past
	// its deadline, a REQ whose client left) sends PostgreSQL a cancel
	// request, so the statement stops in the server instead of running on
	// after pgx stops waiting. Writes run under writeContext, which never
	// ends early, so this never leaves a write's outcome unknown.
	pcfg.ConnConfig.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, CancelRequestDelay: 0, DeadlineDelay: 2 * time.Second}
	}
	pcfg.ConnConfig.ConnectTimeout = cfg.ConnectTimeout
	if pcfg.ConnConfig.ConnectTimeout <= 0 {
		pcfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	if cfg.poolHook != nil {
		cfg.poolHook(pcfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, &OpenError{URL: redacted, Reason: scrub(err.Error(), cfg.URL), Err: err}
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		kind, reason := classify(err, pcfg.ConnConfig.Database)
		return nil, &OpenError{URL: redacted, Reason: scrub(reason, cfg.URL), Kind: kind, Err: err}
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, &OpenError{URL: redacted, Reason: scrub(err.Error(), cfg.URL), Err: err}
	}
	if foreign, err := foreignTables(ctx, pool); err != nil {
		cfg.Logger.Warn("could not list the database's tables", "err", err)
	} else if len(foreign) > 0 {
		cfg.Logger.Warn("the database holds tables that are not Burrow's; a database of its own is safer (backups, restores and upgrades treat the whole database as the relay's)",
			"database", redacted, "tables", strings.Join(foreign, ", "))
	}

	s := &Store{
		pool:     pool,
		log:      cfg.Logger,
		now:      cfg.Now,
		maxBatch: cfg.MaxBatch,
		noSeq:    cfg.DisableSequencing,
		onCommit: cfg.OnCommit,

		chunkHook: cfg.chunkHook,
		chunkCap:  cfg.chunkCap,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.maxBatch <= 0 {
		s.maxBatch = 256
	}
	s.rewrite = newRewriter(pool, s.log, cfg.KeyPackageRewriteWithin, cfg.KeyPackageRewriteLockWait)
	n := cfg.Writers
	if n <= 0 {
		n = 1
	}
	for range n {
		q := make(chan *saveReq, 1024)
		s.queues = append(s.queues, q)
		s.writers.Go(func() { s.writer(q) })
	}
	s.log.Debug("postgres store open", "url", redacted)
	return s, nil
}

// writeContext is the context a write runs under once it starts: the
// caller's values without its cancellation, so that a caller who gives up
// mid-write cannot leave the outcome unknown (waits are bounded inside
// PostgreSQL by LockTimeout instead). A ctx already done fails the write
// before it starts.
func writeContext(ctx context.Context) (context.Context, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return context.WithoutCancel(ctx), nil
}

// busy wraps err with storage.ErrBusy when PostgreSQL gave up waiting for a
// lock (lock_timeout; the statement's transaction is rolled back), and
// with storage.ErrFull when its disk is full (the transaction is rolled
// back too).
func busy(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "55P03": // lock_not_available
			return fmt.Errorf("%w: %w", storage.ErrBusy, err)
		case "53100": // disk_full
			return fmt.Errorf("%w: %w", storage.ErrFull, err)
		}
	}
	return err
}

// classify says, in a few words, why connecting failed.
func classify(err error, database string) (error, string) {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "28P01", "28000":
			return ErrAuthentication, "authentication failed (" + pgErr.Message + ")"
		case "3D000":
			return ErrNoDatabase, fmt.Sprintf("database %q does not exist", database)
		}
		return nil, pgErr.Message + " (SQLSTATE " + pgErr.Code + ")"
	}
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return ErrUnreachable, "unreachable: connection refused"
	case errors.As(err, &dnsErr):
		return ErrUnreachable, "unreachable: host not found"
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return ErrUnreachable, "unreachable: timed out"
	case errors.Is(err, context.Canceled):
		return nil, "canceled"
	}
	var netErr *net.OpError
	if errors.As(err, &netErr) {
		return ErrUnreachable, "unreachable: " + netErr.Err.Error()
	}
	return nil, strings.ReplaceAll(err.Error(), "\n", " ")
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

var (
	kvPassword = regexp.MustCompile(`(?i)\b(password|sslpassword)\s*=\s*('(?:[^'\\]|\\.)*'|\S*)`)
	urlUserPW  = regexp.MustCompile(`://([^:/@]*):[^/]*@`)
)

// RedactURL returns a connection string fit for messages and logs: any
// password (in the user info of a URL of any scheme, or as a password or
// sslpassword parameter) is replaced by "xxxxx". It accepts PostgreSQL URLs
// and key=value strings, and also serves for Redis URLs.
func RedactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && strings.Contains(s, "://") {
		q := u.Query()
		changed := false
		for _, k := range []string{"password", "sslpassword"} {
			if q.Has(k) {
				q.Set(k, "xxxxx")
				changed = true
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
		return u.Redacted()
	}
	s = kvPassword.ReplaceAllString(s, "${1}=xxxxx")
	return urlUserPW.ReplaceAllString(s, "://${1}:xxxxx@")
}

// scrub removes from msg every password found in connString, as a last
// guard for messages built from driver errors.
func scrub(msg, connString string) string {
	msg = strings.ReplaceAll(msg, "\n", " ")
	var pws []string
	if u, err := url.Parse(connString); err == nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			pws = append(pws, pw, url.QueryEscape(pw), url.PathEscape(pw))
		}
		for _, k := range []string{"password", "sslpassword"} {
			if v := u.Query().Get(k); v != "" {
				pws = append(pws, v)
			}
		}
	}
	for _, m := range kvPassword.FindAllStringSubmatch(connString, -1) {
		if v := strings.Trim(m[2], "'"); v != "" {
			pws = append(pws, v)
		}
	}
	for _, pw := range pws {
		msg = strings.ReplaceAll(msg, pw, "xxxxx")
	}
	return msg
}

func (s *Store) isClosed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if s.isClosed() {
		return storage.ErrClosed
	}
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres ping: %w", err)
	}
	return nil
}

// Close waits for queued saves to finish, then closes the pool. Later calls
// of any method return storage.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return storage.ErrClosed
	}
	s.closed = true
	for _, q := range s.queues {
		close(q)
	}
	s.mu.Unlock()
	s.writers.Wait()
	s.rewrite.close() // runs a pending rewrite first
	s.pool.Close()
	return nil
}
