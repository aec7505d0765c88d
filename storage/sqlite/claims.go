package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/burrow-relay/burrow/storage"
)

// handoutClaims keeps the KeyPackage hand-out's claims in the database
// (table keypackage_claims), so they survive a restart. Claims are decided
// by the single writer, one at a time, which makes each Claim atomic.
type handoutClaims struct{ s *Store }

// HandoutClaims implements storage.Store.
func (s *Store) HandoutClaims() storage.HandoutClaims { return handoutClaims{s} }

// Claim implements storage.HandoutClaims.
func (c handoutClaims) Claim(ctx context.Context, requester string, candidates []storage.HandoutClaim, until time.Time) (storage.HandoutClaim, bool, error) {
	if c.s.isClosed.Load() {
		return storage.HandoutClaim{}, false, storage.ErrClosed
	}
	var (
		got storage.HandoutClaim
		ok  bool
	)
	err := c.s.write(ctx, func(tx *txn) error {
		got, ok = storage.HandoutClaim{}, false // the writer may run an op twice
		now := time.Now().UnixMilli()
		free := -1
		for i, cand := range candidates {
			var (
				holder, eventID string
				end             int64
			)
			err := tx.tx.QueryRowContext(tx.ctx, `SELECT requester, event_id, until FROM keypackage_claims WHERE ref = ?`, cand.Ref).
				Scan(&holder, &eventID, &end)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				if free < 0 {
					free = i
				}
			case err != nil:
				return fmt.Errorf("sqlite: read hand-out claim: %w", err)
			case holder == requester && end > now:
				got = storage.HandoutClaim{Ref: cand.Ref, EventID: eventID, Requester: holder, Until: time.UnixMilli(end)}
				ok = true
				return nil
			}
		}
		if free < 0 {
			return nil
		}
		cand := candidates[free]
		tx.dirty = true
		if _, err := tx.tx.ExecContext(tx.ctx, `INSERT INTO keypackage_claims (ref, event_id, requester, until) VALUES (?, ?, ?, ?)`,
			cand.Ref, cand.EventID, requester, until.UnixMilli()); err != nil {
			return fmt.Errorf("sqlite: record hand-out claim: %w", err)
		}
		got = storage.HandoutClaim{Ref: cand.Ref, EventID: cand.EventID, Requester: requester, Until: time.UnixMilli(until.UnixMilli())}
		ok = true
		return nil
	})
	if err != nil {
		return storage.HandoutClaim{}, false, err
	}
	return got, ok, nil
}

// Expired implements storage.HandoutClaims.
func (c handoutClaims) Expired(ctx context.Context, now time.Time) ([]storage.HandoutClaim, error) {
	if c.s.isClosed.Load() {
		return nil, storage.ErrClosed
	}
	rows, err := c.s.readDB.QueryContext(ctx, `SELECT ref, event_id, requester, until FROM keypackage_claims
	WHERE until <= ? ORDER BY until, ref`, now.UnixMilli())
	if err != nil {
		return nil, c.s.readErr("expired hand-out claims", err)
	}
	defer rows.Close()
	var out []storage.HandoutClaim
	for rows.Next() {
		var (
			cl  storage.HandoutClaim
			end int64
		)
		if err := rows.Scan(&cl.Ref, &cl.EventID, &cl.Requester, &end); err != nil {
			return nil, c.s.readErr("expired hand-out claims", err)
		}
		cl.Until = time.UnixMilli(end)
		out = append(out, cl)
	}
	if err := rows.Err(); err != nil {
		return nil, c.s.readErr("expired hand-out claims", err)
	}
	return out, nil
}

// Release implements storage.HandoutClaims.
func (c handoutClaims) Release(ctx context.Context, refs []string) error {
	if c.s.isClosed.Load() {
		return storage.ErrClosed
	}
	if len(refs) == 0 {
		return nil
	}
	return c.s.write(ctx, func(tx *txn) error {
		tx.dirty = true
		for _, ref := range refs {
			if _, err := tx.tx.ExecContext(tx.ctx, `DELETE FROM keypackage_claims WHERE ref = ?`, ref); err != nil {
				return fmt.Errorf("sqlite: release hand-out claim: %w", err)
			}
		}
		return nil
	})
}
