// Package sqlite is Burrow's embedded storage backend: a storage.Store on one
// SQLite file through modernc.org/sqlite (pure Go, no cgo). It owns the
// schema and its migrations, the single group-committing writer, the
// read-only connection pool, the SQL built from NIP-01 filters, the
// KeyPackage rules (twins, lifetimes, slot caps), NIP-62 requests to vanish
// and bans, and the secure deletion of event bytes (secure_delete and WAL
// checkpoints).
package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/burrow-relay/burrow/storage"
)

// Config configures Open. Only Path is required.
type Config struct {
	// Path is the database file. Its parent directory is created (mode 0700)
	// if missing. SQLite keeps two companion files beside it while open:
	// Path+"-wal" and Path+"-shm".
	Path string

	// Logger receives operational logs; it never sees event content. Nil
	// discards them.
	Logger *slog.Logger

	// Synchronous is SQLite's synchronous setting, which decides what an
	// acknowledged Save survives (the database runs in WAL mode):
	//   - "FULL" (the default): the WAL is fsynced at every commit. Every
	//     acknowledged event survives a process kill and a power loss.
	//   - "EXTRA": FULL plus the directory syncs SQLite adds for journal
	//     files; never less durable than FULL.
	//   - "NORMAL": the WAL is fsynced only at checkpoints. Every
	//     acknowledged event survives a process kill (the OS holds the
	//     writes); a power loss or OS crash may lose the last acknowledged
	//     events, though the database stays consistent.
	//   - "OFF": no fsync at all. A process kill loses nothing; a power loss
	//     may lose recent events or corrupt the database.
	Synchronous string

	// BusyTimeout is how long a connection waits for a lock held by another
	// connection or process before failing. Default 5s.
	BusyTimeout time.Duration

	// ReadConns caps the read-only connections that serve Query and Count.
	// Default 4.
	ReadConns int

	// MaxBatch caps how many queued writes (Save, Delete) the writer commits
	// in one transaction. Default 256.
	MaxBatch int

	// OnCheckpoint, if set, is called after each WAL checkpoint the store
	// runs on its own because a committed write deleted a KeyPackage (kind
	// 443 or 30443): attempts is how many TRUNCATE tries it took (more than
	// one means readers held the WAL), err is nil once the WAL is empty.
	// A failed round is retried about a second later and reported again.
	// A burst of deletions shares one checkpoint, run about 100 ms after
	// the first. Rounds cut short by Close are not reported. It runs on the
	// store's checkpoint goroutine, so it must return quickly (update a
	// metric); it must not call the Store.
	OnCheckpoint func(attempts int, err error)

	// OnCommit, if set, is called after each transaction the writer
	// commits: writes is how many queued writes (Save, Delete and the
	// like) it held, took how long it ran, from its BEGIN to its COMMIT
	// returning, that is with the fsync at synchronous FULL. Every caller
	// of the batch waited about that long for its answer, plus the time
	// its write queued. It runs on the writer goroutine, so it must return
	// quickly (update a metric); it must not call the Store.
	OnCommit func(writes int, took time.Duration)

	// DisableSequencing is for benchmarks: kind 445 events are stored
	// without seq numbers, as on a plain relay (Save answers Seq 0).
	// GroupLog, LastSeq and ClaimSlot then fail with an error saying so.
	DisableSequencing bool
}

// Defaults used when a Config field is zero.
const (
	defaultSynchronous = "FULL"
	defaultBusyTimeout = 5 * time.Second
	defaultReadConns   = 4
	defaultMaxBatch    = 256
	writeQueue         = 1024 // queued writes before Save blocks the caller

	// The WAL is checkpointed off the writer (checkpointer.go); the
	// writer's own automatic checkpoint, which runs inside its commit, is
	// only the backstop, at backstopPages (32 MiB at 4 KiB pages).
	autoCheckpointPages = backstopPages
	// writerCacheKiB is the writer's page cache, so the index pages most
	// inserts touch stay in memory (the OS page cache holds the rest). Its
	// size is paid at every commit too: ending a write transaction scans the
	// cache's page hash table (pcache1TruncateUnsafe in profiles), which at
	// 32 MiB cost the writer more than the extra page reads of 8 MiB do.
	writerCacheKiB = 8 << 10

	// maxCheckpointBackoff caps the pause between checkpoint attempts.
	maxCheckpointBackoff = 200 * time.Millisecond
)

// Store is a storage.Store on one SQLite database file. Several Stores (in
// one process or several) may open the same file: SQLite's file locks
// serialize their writers, and every rule is checked inside the writing
// transaction.
type Store struct {
	log     *slog.Logger
	writeDB *sql.DB // exactly one connection: the writer's
	readDB  *sql.DB // read-only pool
	// raw and stmts are the write connection as the driver gives it and
	// the writer's statements prepared on it (raw.go). Only the writer
	// goroutine uses them, and Open and Close before and after it runs.
	raw      *rawConn
	stmts    *statements
	maxBatch int
	noSeq    bool // Config.DisableSequencing
	// busyTimeout is restored on the writer connection after a checkpoint.
	busyTimeout time.Duration

	// mu guards closed and the sends on ops, so no write is queued after
	// Close closes ops.
	mu       sync.RWMutex
	closed   bool
	isClosed atomic.Bool // lock-free copy of closed for readers
	ops      chan *writeOp
	done     chan struct{} // closed when the writer goroutine has exited

	onCommit func(writes int, took time.Duration) // Config.OnCommit
	// batchHook, set by this package's tests before any write, is told how
	// long each committed batch worked before its commit, and how long it
	// held the writer in all (its commit included).
	batchHook func(work, hold time.Duration)
	// chunkCap, set by this package's tests before any write, caps the
	// events one chunk of a ban or a request to vanish removes.
	chunkCap int
	// ckptHook, set by this package's tests before any write, is told the
	// outcome of each PASSIVE checkpoint (passiveCheckpoint).
	ckptHook func(walFrames, copied int, took time.Duration)

	// The checkpointer copies the WAL into the database file off the
	// writer (checkpointer.go).
	ckptDB     *sql.DB       // exactly one connection: the checkpointer's
	ckptMu     sync.Mutex    // held by every checkpoint the store runs
	ckptKick   chan struct{} // capacity 1
	ckptDone   chan struct{} // closed when the checkpointer has exited
	walPending atomic.Int64  // pages written to the WAL since the last checkpoint began
	walWritten atomic.Int64  // pages written to the WAL since Open

	// The scrubber checkpoints the WAL after KeyPackage deletions (scrub.go).
	onCheckpoint    func(attempts int, err error)
	scrubKick       chan struct{} // capacity 1: one pending request covers all
	stopScrub       context.CancelFunc
	scrubDone       chan struct{} // closed when the scrubber has exited
	scrubsScheduled atomic.Int64  // requests made, for tests
}

var _ storage.Store = (*Store)(nil)

// Open opens (creating if needed) the database at cfg.Path, applies pending
// schema migrations and starts the writer.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Path == "" {
		return nil, errors.New("sqlite: Config.Path is empty")
	}
	if strings.ContainsRune(cfg.Path, '?') {
		return nil, fmt.Errorf("sqlite: Config.Path %q contains '?', which SQLite would read as parameters", cfg.Path)
	}
	path, err := filepath.Abs(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: resolve %q: %w", cfg.Path, err)
	}
	syncMode := strings.ToUpper(cmp.Or(cfg.Synchronous, defaultSynchronous))
	switch syncMode {
	case "FULL", "EXTRA", "NORMAL", "OFF":
	default:
		return nil, fmt.Errorf("sqlite: Config.Synchronous %q is not FULL, EXTRA, NORMAL or OFF", cfg.Synchronous)
	}
	busy := cmp.Or(cfg.BusyTimeout, defaultBusyTimeout)
	if busy < 0 || cfg.ReadConns < 0 || cfg.MaxBatch < 0 {
		return nil, errors.New("sqlite: Config.BusyTimeout, ReadConns and MaxBatch must not be negative")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: create directory: %w", err)
	}

	s := &Store{
		log:         cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler)),
		maxBatch:    cmp.Or(cfg.MaxBatch, defaultMaxBatch),
		noSeq:       cfg.DisableSequencing,
		busyTimeout: busy,
		ops:         make(chan *writeOp, writeQueue),
		done:        make(chan struct{}),

		onCheckpoint: cfg.OnCheckpoint,
		onCommit:     cfg.OnCommit,
		scrubKick:    make(chan struct{}, 1),
		scrubDone:    make(chan struct{}),
		ckptKick:     make(chan struct{}, 1),
		ckptDone:     make(chan struct{}),
	}
	s.writeDB, err = sql.Open("sqlite", dsn(path, busy, url.Values{
		"_pragma": {
			"journal_mode(WAL)", "synchronous(" + syncMode + ")", "secure_delete(ON)", "temp_store(MEMORY)",
			fmt.Sprintf("cache_size(-%d)", writerCacheKiB),
			fmt.Sprintf("wal_autocheckpoint(%d)", autoCheckpointPages),
		},
		// BEGIN IMMEDIATE: the writer takes the write lock before its
		// first read, so what it checks cannot change before it commits.
		"_txlock": {"immediate"},
	}))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open writer: %w", err)
	}
	s.writeDB.SetMaxOpenConns(1)
	s.writeDB.SetMaxIdleConns(1)
	s.writeDB.SetConnMaxLifetime(0)
	s.writeDB.SetConnMaxIdleTime(0)

	fail := func(what string, err error) (*Store, error) {
		_ = s.writeDB.Close()
		if s.readDB != nil {
			_ = s.readDB.Close()
		}
		if s.ckptDB != nil {
			_ = s.ckptDB.Close()
		}
		return nil, fmt.Errorf("sqlite: %s: %w", what, err)
	}
	applied, err := migrate(ctx, s.writeDB)
	if err != nil {
		return fail("migrate", err)
	}
	if err := s.withWriter(func(*rawConn) {}); err != nil {
		return fail("prepare statements", err)
	}
	// Readers are opened after the writer has switched the file to WAL.
	s.readDB, err = sql.Open("sqlite", dsn(path, busy, url.Values{
		// temp_store: sorts and temporary b-trees hold event content; kept
		// in memory they never reach a temporary file on disk.
		"_pragma": {"query_only(1)", "secure_delete(ON)", "temp_store(MEMORY)"},
	}))
	if err != nil {
		return fail("open readers", err)
	}
	s.readDB.SetMaxOpenConns(cmp.Or(cfg.ReadConns, defaultReadConns))
	s.readDB.SetMaxIdleConns(cmp.Or(cfg.ReadConns, defaultReadConns))
	if err := s.readDB.PingContext(ctx); err != nil {
		return fail("open readers", err)
	}
	// The checkpointer's connection syncs as the writer's does: a
	// checkpoint fsyncs the WAL before copying it, and the database file
	// before the WAL may be reused, as the connection's synchronous says.
	s.ckptDB, err = sql.Open("sqlite", dsn(path, busy, url.Values{
		"_pragma": {"synchronous(" + syncMode + ")"},
	}))
	if err != nil {
		return fail("open checkpointer", err)
	}
	s.ckptDB.SetMaxOpenConns(1)
	s.ckptDB.SetMaxIdleConns(1)
	s.ckptDB.SetConnMaxLifetime(0)
	s.ckptDB.SetConnMaxIdleTime(0)
	if err := s.ckptDB.PingContext(ctx); err != nil {
		return fail("open checkpointer", err)
	}

	go s.writer()
	// The scrubber and the checkpointer outlive any caller's context;
	// Close stops them.
	scrubCtx, stopScrub := context.WithCancel(context.WithoutCancel(ctx))
	s.stopScrub = stopScrub
	go s.scrubber(scrubCtx)
	go s.checkpointer(scrubCtx)
	s.log.Info("sqlite store open", "path", path, "synchronous", syncMode, "migrations_applied", applied)
	return s, nil
}

func dsn(path string, busy time.Duration, params url.Values) string {
	params.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
	return path + "?" + params.Encode()
}

// Close stops accepting writes, lets the writer commit what is already
// queued, and closes the database. Later calls return storage.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return storage.ErrClosed
	}
	s.closed = true
	s.isClosed.Store(true)
	close(s.ops)
	s.mu.Unlock()
	<-s.done
	// After the writer: its last commits may have scheduled a checkpoint,
	// which closing the connections below performs instead.
	s.stopScrub()
	<-s.scrubDone
	<-s.ckptDone
	err := errors.Join(s.closeStatements(), s.readDB.Close(), s.ckptDB.Close(), s.writeDB.Close())
	if err != nil {
		return fmt.Errorf("sqlite: close: %w", err)
	}
	return nil
}

// closeStatements finalizes the writer's statements, on the connection
// they were prepared on (the writer has exited).
func (s *Store) closeStatements() error {
	if s.raw == nil {
		return nil
	}
	conn, err := s.writeDB.Conn(context.Background())
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		if dc != s.raw.dc {
			return nil // gone with the connection they were prepared on
		}
		return s.raw.close()
	})
}

// Ping reports whether the database answers a read.
func (s *Store) Ping(ctx context.Context) error {
	if s.isClosed.Load() {
		return storage.ErrClosed
	}
	var one int
	if err := s.readDB.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return s.readErr("ping", err)
	}
	return nil
}

// readErr wraps a read failure, reporting storage.ErrClosed when the failure
// came from a concurrent Close.
func (s *Store) readErr(op string, err error) error {
	if s.isClosed.Load() {
		return fmt.Errorf("sqlite: %s: %w", op, storage.ErrClosed)
	}
	return fmt.Errorf("sqlite: %s: %w", op, err)
}

// checkpoint copies the WAL into the database file and truncates the WAL to
// zero bytes, so deleted events' bytes (zeroed in the database pages by
// secure_delete) leave the WAL too. A checkpoint cannot finish while a reader
// still uses WAL frames, so it retries with backoff until it completes or ctx
// ends. It returns how many attempts it took. The backoff stays short so the
// WAL is emptied soon after the last reader lets go; a failed attempt costs
// only a moment of the writer's connection. Each attempt first copies what
// it can with a PASSIVE checkpoint off the writer, so the TRUNCATE on the
// writer's connection has only the frames committed meanwhile to copy.
func (s *Store) checkpoint(ctx context.Context) (attempts int, err error) {
	if s.isClosed.Load() {
		return 0, storage.ErrClosed
	}
	backoff := 5 * time.Millisecond
	for attempts = 1; ; attempts++ {
		if _, _, err := s.passiveCheckpoint(ctx); err != nil {
			return attempts, fmt.Errorf("sqlite: checkpoint: %w", err)
		}
		busy, walFrames, copied, err := s.checkpointOnce(ctx)
		if err != nil {
			return attempts, fmt.Errorf("sqlite: checkpoint: %w", err)
		}
		if busy == 0 {
			return attempts, nil
		}
		s.log.Debug("wal checkpoint blocked by readers, retrying", "attempt", attempts, "wal_frames", walFrames, "copied", copied)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return attempts, fmt.Errorf("sqlite: checkpoint after %d attempts: %w", attempts, ctx.Err())
		case <-t.C:
		}
		backoff = min(2*backoff, maxCheckpointBackoff)
	}
}

// checkpointOnce makes one TRUNCATE checkpoint attempt on the writer's
// connection (between batches). With the normal busy_timeout, TRUNCATE would
// wait that long for readers while holding the only write connection and
// stall every Save, so the attempt runs with busy_timeout 0 and checkpoint
// does the waiting without the connection.
func (s *Store) checkpointOnce(ctx context.Context) (busy, walFrames, copied int, err error) {
	s.ckptMu.Lock()
	defer s.ckptMu.Unlock()
	conn, err := s.writeDB.Conn(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `PRAGMA busy_timeout = 0`); err != nil {
		return 0, 0, 0, err
	}
	err = conn.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &walFrames, &copied)
	// Restore even if ctx has ended: the connection lives on as the writer's.
	if _, rerr := conn.ExecContext(context.WithoutCancel(ctx), fmt.Sprintf(`PRAGMA busy_timeout = %d`, s.busyTimeout.Milliseconds())); rerr != nil {
		err = errors.Join(err, fmt.Errorf("restore busy_timeout: %w", rerr))
	}
	return busy, walFrames, copied, err
}
