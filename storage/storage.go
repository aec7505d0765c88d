// Package storage owns the Store contract every Burrow backend implements:
// how events are saved, replaced, deleted, tombstoned, queried, counted and
// expired. The backends live in subpackages named after what they wrap
// (storage/sqlite, storage/postgres); storage/storetest is the one
// conformance suite they all pass.
//
// # Errors
//
// Methods return the sentinel errors below, wrapped with %w and context;
// callers match them with errors.Is. Any other error is a backend failure
// (the caller answers "error:").
package storage

import (
	"context"
	"errors"
	"iter"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// Sentinel errors. Each names the NIP-01 prefix the relay answers with.
var (
	// ErrDuplicate: an event with this id is already stored ("duplicate:").
	ErrDuplicate = errors.New("event already stored")
	// ErrDeleted: the id is tombstoned, or a stored kind 5 from the same
	// author names it (by id, or by address with created_at at or before the
	// request's), so it may not be stored again ("blocked:").
	ErrDeleted = errors.New("event was deleted")
	// ErrReplaced: a newer version of this replaceable or addressable event is
	// already stored (newer created_at, or equal created_at and lower id)
	// ("blocked:").
	ErrReplaced = errors.New("a newer version is stored")
	// ErrExpired: the event's NIP-40 expiration is already in the past
	// ("invalid:").
	ErrExpired = errors.New("event has expired")
	// ErrNotAuthor: a kind 5 whose every target that the store holds belongs
	// to another author; nothing is stored ("blocked:").
	ErrNotAuthor = errors.New("deletion targets events of another author")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store closed")
	// ErrBanned: the author was banned with Ban ("blocked: banned").
	ErrBanned = errors.New("author is banned")
	// ErrSlotCap: SaveKeyPackage would open a new kind 30443 slot for an
	// author already at the cap, and no slot is old enough to evict
	// ("blocked: too many KeyPackage slots").
	ErrSlotCap = errors.New("too many KeyPackage slots")
	// ErrBusy: a lock the operation needed stayed held by another
	// operation for longer than the backend's bound; nothing was written
	// and the operation may be retried ("error:"). The bound is enforced
	// inside the database, so an operation reported busy never commits
	// later.
	ErrBusy = errors.New("store busy: a lock was held too long")
	// ErrFull: the backend's disk (or quota) is full, so nothing was
	// written; the operation may be retried once space is freed
	// ("error:").
	ErrFull = errors.New("storage is full")
	// ErrSlotTaken: a commit slot is held by another Commit, or a bare kind
	// 445 is a Commit that lost a slot. Always returned as *SlotTakenError,
	// which names the holder ("blocked: slot taken by <holder id>").
	ErrSlotTaken = errors.New("commit slot taken")
)

// Claims refused because of the claimed Commit's own past (ClaimSlot).
var (
	// ErrCommitLost: the Commit lost a slot of its group before (or held
	// one and was released), so it may never hold a slot again. Always
	// returned as *CommitLostError ("blocked: commit lost slot <slot> to
	// <holder id>").
	ErrCommitLost = errors.New("commit lost a slot before")
	// ErrCommitHolds: the Commit already holds another slot of its group;
	// a Commit holds at most one. Always returned as *CommitHoldsError
	// ("blocked: commit holds slot <slot>").
	ErrCommitHolds = errors.New("commit holds another slot")
)

// SlotTakenError is the ErrSlotTaken failure: Holder is the id of the kind
// 445 Commit that currently holds the slot.
type SlotTakenError struct {
	Holder string
}

func (e *SlotTakenError) Error() string { return "commit slot taken by " + e.Holder }

// Unwrap makes errors.Is(err, ErrSlotTaken) hold.
func (e *SlotTakenError) Unwrap() error { return ErrSlotTaken }

// CommitLostError is the ErrCommitLost failure: the Commit lost Slot (or
// was released from it), whose current holder is Holder.
type CommitLostError struct {
	Slot   string
	Holder string
}

func (e *CommitLostError) Error() string { return "commit lost slot " + e.Slot + " to " + e.Holder }

// Unwrap makes errors.Is(err, ErrCommitLost) hold.
func (e *CommitLostError) Unwrap() error { return ErrCommitLost }

// CommitHoldsError is the ErrCommitHolds failure: the Commit holds Slot.
type CommitHoldsError struct {
	Slot string
}

func (e *CommitHoldsError) Error() string { return "commit holds slot " + e.Slot }

// Unwrap makes errors.Is(err, ErrCommitHolds) hold.
func (e *CommitHoldsError) Unwrap() error { return ErrCommitHolds }

// Reason says why an event left storage. It is recorded with tombstones and
// labels deletion metrics; it never carries event content.
type Reason string

const (
	ReasonDeletionRequest Reason = "deletion_request" // NIP-09 kind 5 from the author
	ReasonReplaced        Reason = "replaced"         // a newer replaceable/addressable version
	ReasonExpired         Reason = "expired"          // NIP-40 expiration passed
	ReasonAdmin           Reason = "admin"            // operator action (NIP-86 banevent)
	ReasonTwin            Reason = "twin"             // another event carrying the same KeyPackage
	ReasonEvicted         Reason = "evicted"          // least recently refreshed slot over the cap
	ReasonVanish          Reason = "vanish"           // NIP-62 request to vanish
	ReasonBanned          Reason = "banned"           // NIP-86 banpubkey
	ReasonClaimed         Reason = "claimed"          // handed out once (opt-in), then deleted
	ReasonRetention       Reason = "retention"        // kind 445 older than the group retention
)

// KeyPackage is what the relay's KeyPackage rules (package keypackages)
// computed for a kind 443 or 30443 event, for SaveKeyPackage.
//
// Twins: an author's 443 and 30443 events with the same Ref carry the same
// KeyPackage. They coexist: saving one never deletes another, and all are
// served. A KeyPackage dies with the first of its events to leave storage,
// whatever removes it (a kind 5, a newer version of its 30443 slot that
// carries another KeyPackage, expiry, eviction, Delete, Ban, a request to
// vanish): in the same transaction every other event carrying it is
// removed and tombstoned (ReasonTwin, unless the same operation removes it
// for its own reason), and its Ref is tombstoned, so SaveKeyPackage of any
// event carrying it afterwards fails with ErrDeleted. The one exception is
// the event being saved: a new version of a 30443 slot that carries the
// same KeyPackage replaces the old version (ReasonReplaced) and the
// KeyPackage, with its twins, lives on in it.
type KeyPackage struct {
	// Ref is the lowercase hex KeyPackageRef of the inner KeyPackage, the
	// key that makes events twins. Empty: the event has no twins and is a
	// KeyPackage of its own for the slot cap.
	Ref string
	// NotAfter is when the KeyPackage stops being usable (its MLS not_after
	// plus the relay's grace). The event expires then, or at its NIP-40
	// expiration if that is earlier: Query and Count stop returning it and
	// DeleteExpired removes it (ReasonExpired).
	NotAfter time.Time
	// SlotCap, when positive, caps how many KeyPackages an author has live
	// (not expired): each distinct Ref counts once, however many 443 and
	// 30443 events carry it, so legacy 443s count as well as 30443 slots.
	// A save that adds a KeyPackage (its Ref is not live yet, and it does
	// not replace the version of an existing 30443 slot) at the cap evicts
	// the author's least recently refreshed KeyPackages (those whose newest
	// event is oldest, ties to the lower id), as many as it takes, if their
	// newest events are all older than EvictAfter, and fails with
	// ErrSlotCap otherwise. An evicted KeyPackage's newest event is removed
	// with ReasonEvicted, its twins with ReasonTwin.
	SlotCap    int
	EvictAfter time.Duration
}

// Result describes what a successful Save did.
type Result struct {
	// Seq is the per-group sequence number assigned to a kind 445 event with
	// exactly one "h" tag (1 for a group's first event), or 0 for any other
	// event.
	Seq int64
	// Deleted lists the ids this save removed in the same transaction
	// (replaced versions, targets of a kind 5), with the reason for each.
	Deleted []Deletion
}

// Deletion is one event removed from storage.
type Deletion struct {
	ID     string
	Kind   int
	PubKey string
	Reason Reason
}

// Sequenced is a stored kind 445 event with its group sequence number.
type Sequenced struct {
	Seq   int64
	Event *nostr.Event
	// Released is true for a Commit that held a commit slot and was released
	// by a release claim (it stays in the log).
	Released bool
	// Releases, for the replacement Commit of a release claim, names the
	// Commit it released; nil otherwise.
	Releases *Release
}

// Release names a Commit that a release claim released: its id and seq.
type Release struct {
	ID  string
	Seq int64
}

// SlotClaim is a verified commit-slot claim (docs/commit-slots.md): the
// kind 445 Commit it carries, for the slot of group H. The caller has
// checked the claim's and the Commit's ids, signatures and shapes.
type SlotClaim struct {
	H      string       // the group id (the Commit's single h tag)
	Slot   string       // the slot: the claim's pubkey, 64 lowercase hex
	Commit *nostr.Event // the inner kind 445
	// Release, when set, is the id of the Commit the claim asks to release
	// (a release claim); "" for a plain claim.
	Release string
}

// SlotResult describes what a successful ClaimSlot did.
type SlotResult struct {
	// Result is that of saving the Commit: Seq is its group seq (also when
	// the claim is a retry and nothing new was stored), Deleted what the
	// save removed.
	Result
	// Stored is true when this call stored the Commit (false for a retry, or
	// when the Commit was already stored as a bare event).
	Stored bool
	// Released is the id of the Commit this call released ("" if none; a
	// retry of a successful release reports it again), and ReleasedSeq
	// its seq.
	Released    string
	ReleasedSeq int64
}

// Key is an event's place in NIP-77 set reconciliation: its created_at,
// then its id (the raw 32 bytes, 40 bytes a key in memory rather than a
// decoded event).
type Key struct {
	CreatedAt int64
	ID        [32]byte
}

// Store is the storage contract. Implementations must be safe for concurrent
// use by many goroutines and by several processes sharing one database (for
// backends that allow that): every rule below holds under concurrency.
//
// Outcomes never depend on when a caller gives up: a write whose context
// ends before the backend starts it fails with the context's error and
// changes nothing; once started, the call waits for its real outcome and
// reports it. Waits inside the backend (locks) are bounded there
// (ErrBusy), never by cancelling the client.
type Store interface {
	// Save stores ev, which the caller has already checked (id, signature,
	// shape). In one transaction it applies:
	//   - tombstones and NIP-09: ErrDeleted if ev.ID was deleted before, or a
	//     stored kind 5 from ev's author names ev by "e", or by "a" with a
	//     created_at >= ev.CreatedAt;
	//   - NIP-40: ErrExpired if ev's expiration is at or before now;
	//   - replaceable kinds (0, 3, 10000-19999) and addressable kinds
	//     (30000-39999, keyed by the first "d" value): newest created_at wins,
	//     ties to the lower id; the older version is deleted (and listed in
	//     Result.Deleted), or ErrReplaced if ev is the older one. Enforced by a
	//     unique constraint so two writers can never both keep a version;
	//   - kind 5: deletes the targets named by "e" and "a" (addresses delete
	//     versions with created_at <= the request's) that ev's author may
	//     delete: its own events, and kind 1059 gift wraps whose "p" tag names
	//     it (NIP-59); their ids are tombstoned. ErrNotAuthor if targets exist
	//     and none of them may be deleted by ev's author. The kind 5 itself is
	//     stored;
	//   - kind 62 (NIP-62 request to vanish; whether it names this relay is
	//     the caller's check): deletes every event of ev's author and every
	//     kind 1059 whose "p" tag names the author, created at or before the
	//     request (ReasonVanish), tombstones them, and stores the request;
	//     later events of the author created at or before it fail with
	//     ErrDeleted;
	//   - ErrBanned if ev's author was banned;
	//   - kind 445 with exactly one "h": assigns the group's next seq.
	// ErrDuplicate if ev.ID is already stored (Result.Seq then carries the
	// stored event's seq). Ephemeral kinds (20000-29999) must not be passed.
	Save(ctx context.Context, ev *nostr.Event) (Result, error)

	// SaveKeyPackage is Save for a kind 443 or 30443 event whose KeyPackage
	// the caller has validated, applying kp's rules (twins, lifetime expiry,
	// the slot cap; see KeyPackage) in the same transaction. ErrDeleted if
	// kp.Ref was tombstoned (a twin of a deleted KeyPackage). Kinds 443 and
	// 30443 saved with plain Save get the generic rules only. Every other
	// removal path (Save's deletions, Delete, Ban, DeleteExpired) applies
	// the twin rule to the KeyPackages it removes.
	SaveKeyPackage(ctx context.Context, ev *nostr.Event, kp KeyPackage) (Result, error)

	// Ban deletes and tombstones every stored event of pubkey (ReasonBanned)
	// and refuses its future events with ErrBanned. Banning twice is
	// harmless. It returns what it removed.
	Ban(ctx context.Context, pubkey string) ([]Deletion, error)

	// BannedPubKeys lists the banned pubkeys.
	BannedPubKeys(ctx context.Context) ([]string, error)

	// Delete removes the events with these ids and tombstones every id, so
	// they can never be stored again. Ids not stored are tombstoned too and
	// are not an error. It returns what it removed.
	Delete(ctx context.Context, ids []string, reason Reason) ([]Deletion, error)

	// Query yields the events matching f with full NIP-01 semantics (ids,
	// authors, kinds, "#x" tag filters that match only tag name x,
	// since/until inclusive), newest first with ties by lowest id, never an
	// expired event. f.Limit > 0 caps the count; f.Limit == 0 with
	// f.LimitZero yields nothing; otherwise there is no cap (callers clamp).
	// Results stream: the backend does not buffer the whole result set. A
	// backend error is yielded as the final pair and ends the sequence.
	// Every filter Indexable accepts runs on an index; any other fails
	// with Indexable's error (ErrNotIndexed) and reads nothing.
	Query(ctx context.Context, f nostr.Filter) iter.Seq2[*nostr.Event, error]

	// Keys yields the keys (created_at, id) of the events matching f, with
	// Query's semantics (f.Limit > 0 caps the count, and LimitZero is
	// ignored: a key read is never "live only"), oldest first with ties by
	// lowest id: the order NIP-77 set reconciliation sorts by. It reads no
	// content, streams, and fails as Query does on a filter Indexable
	// refuses.
	Keys(ctx context.Context, f nostr.Filter) iter.Seq2[Key, error]

	// Count returns how many events match f, with Query's semantics but
	// ignoring f.Limit (and failing as Query does on a filter Indexable
	// refuses).
	Count(ctx context.Context, f nostr.Filter) (int64, error)

	// DeleteExpired removes every event whose NIP-40 expiration is at or
	// before now and returns what it removed.
	DeleteExpired(ctx context.Context, now time.Time) ([]Deletion, error)

	// GroupLog yields the stored kind 445 events of group h whose seq is
	// above after, in ascending seq, at most limit of them (limit <= 0: no
	// cap), never an expired one, with their release marks (Released,
	// Releases). Numbers of deleted or expired events are
	// holes, never reused. A backend error is yielded as the final pair.
	GroupLog(ctx context.Context, h string, after int64, limit int) iter.Seq2[Sequenced, error]

	// LastSeq returns the last seq assigned in group h (0 if none was).
	LastSeq(ctx context.Context, h string) (int64, error)

	// ClaimSlot arbitrates a commit slot, atomically per (c.H, c.Slot) and
	// per Commit across every process sharing the database:
	//   - held by c.Commit: a retry, same Seq (and Released, ReleasedSeq if
	//     c.Release names a Commit released on this slot), nothing changes;
	//   - c.Commit lost a slot of the group before, or held one and was
	//     released (it can never hold one again): *SlotTakenError naming
	//     the current holder when that slot is c.Slot, *CommitLostError
	//     naming that slot and its current holder otherwise; nothing
	//     changes;
	//   - c.Commit holds another slot of the group: *CommitHoldsError;
	//     nothing changes;
	//   - slot free: c.Commit is saved with Save's rules (failing with
	//     Save's errors, nothing recorded) and holds the slot; if it is
	//     already stored (as a bare event) it holds the slot with its seq;
	//   - c.Release names the current holder: the holder is marked released
	//     (GroupLog reports it; it counts as having lost the slot) and
	//     c.Commit, saved as above, holds the slot in the same transaction;
	//     SlotResult.Released and ReleasedSeq name the holder;
	//   - otherwise: *SlotTakenError naming the current holder, and c.Commit
	//     is recorded as a loser of this slot (a refused release's
	//     replacement too). A loser that is not stored is tombstoned, so a
	//     later Save of it fails with the same *SlotTakenError (naming the
	//     holder at that time), or with ErrDeleted once DeleteGroupEvents
	//     has dropped the record; a loser already stored as a bare event
	//     stays stored, a plain event of the log.
	// A release claim for a free slot is a plain claim.
	ClaimSlot(ctx context.Context, c SlotClaim) (SlotResult, error)

	// DeleteGroupEvents removes every kind 445 created before before
	// (ReasonRetention) and tombstones their ids, as DeleteExpired does, and
	// the commit-slot records (holders, losers, released marks) taken before
	// it; a slot whose record is gone is free again. Group counters stay, so
	// seq numbers are never reused.
	DeleteGroupEvents(ctx context.Context, before time.Time) ([]Deletion, error)

	// HandoutClaims returns the claims of the opt-in KeyPackage hand-out,
	// kept in this store so that every instance sharing it sees them and
	// they survive restarts.
	HandoutClaims() HandoutClaims

	// AdminState returns the NIP-86 records relay admins made (ban
	// reasons, blocked addresses, changed settings), kept in this store so
	// that every instance sharing it sees them and they survive restarts.
	AdminState() AdminState

	// Ping reports whether the backend is reachable (for /readyz).
	Ping(ctx context.Context) error

	// Close releases the backend. Later calls return ErrClosed.
	Close() error
}

// HandoutClaim is a KeyPackage handed out to one requester by the opt-in
// single-use hand-out (package keypackages): Ref identifies the KeyPackage
// (twins share it), EventID is the event handed out (deleting it deletes
// the KeyPackage, twins included), Requester holds it, and at Until the
// claim ends and the KeyPackage is to be deleted.
type HandoutClaim struct {
	Ref       string
	EventID   string
	Requester string
	Until     time.Time
}

// HandoutClaims records which requester holds which handed-out KeyPackage.
// Every rule holds across all processes sharing the store.
type HandoutClaims interface {
	// Claim gives requester one of candidates (their Ref and EventID set),
	// in this order of preference: one requester already holds, unexpired;
	// otherwise the first that nobody holds, claimed for requester until
	// until (a lapsed claim still holds its KeyPackage: it is about to be
	// deleted). ok is false when someone else holds every candidate.
	// Concurrent calls never give one KeyPackage to two requesters, and
	// concurrent calls of one requester over the same candidates give it
	// one KeyPackage between them.
	Claim(ctx context.Context, requester string, candidates []HandoutClaim, until time.Time) (claim HandoutClaim, ok bool, err error)
	// Expired lists the claims whose Until is at or before now, oldest
	// first.
	Expired(ctx context.Context, now time.Time) ([]HandoutClaim, error)
	// Release forgets the claims on these KeyPackages, once they have been
	// deleted.
	Release(ctx context.Context, refs []string) error
}
