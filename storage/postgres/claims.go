package postgres

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/burrow-relay/burrow/storage"
	"github.com/jackc/pgx/v5"
)

// handoutClaims keeps the KeyPackage hand-out's claims in PostgreSQL
// (table keypackage_claims), shared by every instance on the database. A
// claim's row is its KeyPackage's primary key, so two requesters can never
// both hold one; a requester's calls take an advisory lock on the
// requester, so its concurrent calls agree on one KeyPackage.
type handoutClaims struct{ s *Store }

// HandoutClaims implements storage.Store.
func (s *Store) HandoutClaims() storage.HandoutClaims { return handoutClaims{s} }

// Claim implements storage.HandoutClaims.
func (c handoutClaims) Claim(ctx context.Context, requester string, candidates []storage.HandoutClaim, until time.Time) (storage.HandoutClaim, bool, error) {
	if c.s.isClosed() {
		return storage.HandoutClaim{}, false, storage.ErrClosed
	}
	req, ok := decodeHex32(requester)
	if !ok {
		return storage.HandoutClaim{}, false, fmt.Errorf("postgres hand-out claim: requester %q is not 64 lowercase hex characters", requester)
	}
	refs := make([][]byte, len(candidates))
	ids := make([][]byte, len(candidates))
	for i, cand := range candidates {
		if refs[i], ok = decodeHex32(cand.Ref); !ok {
			return storage.HandoutClaim{}, false, fmt.Errorf("postgres hand-out claim: ref %q is not 64 lowercase hex characters", cand.Ref)
		}
		if ids[i], ok = decodeHex32(cand.EventID); !ok {
			return storage.HandoutClaim{}, false, fmt.Errorf("postgres hand-out claim: event id %q is not 64 lowercase hex characters", cand.EventID)
		}
	}
	if len(candidates) == 0 {
		return storage.HandoutClaim{}, false, nil
	}
	ctx, err := writeContext(ctx)
	if err != nil {
		return storage.HandoutClaim{}, false, err
	}
	now := c.s.now().UnixMilli()
	var (
		gotRef, gotID []byte
		gotUntil      int64
	)
	err = pgx.BeginFunc(ctx, c.s.pool, func(tx pgx.Tx) error {
		gotRef = nil
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, lockClassEvent, lockKey('q', requester)); err != nil {
			return err
		}
		// One the requester holds already, the earliest among candidates.
		err := tx.QueryRow(ctx, `SELECT k.ref, k.event_id, k.until
			FROM unnest($2::bytea[]) WITH ORDINALITY AS c(ref, ord)
			JOIN keypackage_claims k ON k.ref = c.ref
			WHERE k.requester = $1 AND k.until > $3 ORDER BY c.ord LIMIT 1`, req, refs, now).Scan(&gotRef, &gotID, &gotUntil)
		if err == nil || !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		// The first free one. A concurrent claim of the same KeyPackage
		// makes the insert wait for it and then do nothing; the next
		// round sees it taken.
		for range candidates {
			err := tx.QueryRow(ctx, `INSERT INTO keypackage_claims (ref, event_id, requester, until)
				SELECT c.ref, c.id, $3, $4 FROM unnest($1::bytea[], $2::bytea[]) WITH ORDINALITY AS c(ref, id, ord)
				 WHERE NOT EXISTS (SELECT 1 FROM keypackage_claims k WHERE k.ref = c.ref)
				 ORDER BY c.ord LIMIT 1
				ON CONFLICT (ref) DO NOTHING RETURNING ref, event_id, until`, refs, ids, req, until.UnixMilli()).Scan(&gotRef, &gotID, &gotUntil)
			if !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			var free bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM unnest($1::bytea[]) AS c(ref)
				WHERE NOT EXISTS (SELECT 1 FROM keypackage_claims k WHERE k.ref = c.ref))`, refs).Scan(&free); err != nil || !free {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return storage.HandoutClaim{}, false, fmt.Errorf("postgres hand-out claim: %w", busy(err))
	}
	if gotRef == nil {
		return storage.HandoutClaim{}, false, nil
	}
	return storage.HandoutClaim{Ref: hex.EncodeToString(gotRef), EventID: hex.EncodeToString(gotID),
		Requester: requester, Until: time.UnixMilli(gotUntil)}, true, nil
}

// Expired implements storage.HandoutClaims.
func (c handoutClaims) Expired(ctx context.Context, now time.Time) ([]storage.HandoutClaim, error) {
	if c.s.isClosed() {
		return nil, storage.ErrClosed
	}
	rows, err := c.s.pool.Query(ctx, `SELECT ref, event_id, requester, until FROM keypackage_claims
		WHERE until <= $1 ORDER BY until, ref`, now.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("postgres expired hand-out claims: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.HandoutClaim, error) {
		var (
			ref, id, req []byte
			end          int64
		)
		err := r.Scan(&ref, &id, &req, &end)
		return storage.HandoutClaim{Ref: hex.EncodeToString(ref), EventID: hex.EncodeToString(id),
			Requester: hex.EncodeToString(req), Until: time.UnixMilli(end)}, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres expired hand-out claims: %w", err)
	}
	return out, nil
}

// Release implements storage.HandoutClaims.
func (c handoutClaims) Release(ctx context.Context, refs []string) error {
	if c.s.isClosed() {
		return storage.ErrClosed
	}
	raw := make([][]byte, 0, len(refs))
	for _, r := range refs {
		b, ok := decodeHex32(r)
		if !ok {
			return fmt.Errorf("postgres release hand-out claims: ref %q is not 64 lowercase hex characters", r)
		}
		raw = append(raw, b)
	}
	ctx, err := writeContext(ctx)
	if err != nil {
		return err
	}
	if _, err := c.s.pool.Exec(ctx, `DELETE FROM keypackage_claims WHERE ref = ANY($1)`, raw); err != nil {
		return fmt.Errorf("postgres release hand-out claims: %w", busy(err))
	}
	return nil
}
