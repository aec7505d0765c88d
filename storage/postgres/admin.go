package postgres

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"

	"github.com/burrow-relay/burrow/storage"
	"github.com/jackc/pgx/v5"
)

// adminState keeps storage.AdminState in the tables of migration 8, shared
// by every instance on the database. Each write is one statement, an
// upsert or a delete by primary key, so concurrent writers of one key
// leave one of their records.
type adminState struct{ s *Store }

// AdminState implements storage.Store.
func (s *Store) AdminState() storage.AdminState { return adminState{s} }

// exec runs one write statement under writeContext.
func (a adminState) exec(ctx context.Context, op, sql string, args ...any) error {
	if a.s.isClosed() {
		return storage.ErrClosed
	}
	ctx, err := writeContext(ctx)
	if err != nil {
		return err
	}
	if _, err := a.s.pool.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("postgres %s: %w", op, busy(err))
	}
	return nil
}

// RecordEventBan implements storage.AdminState.
func (a adminState) RecordEventBan(ctx context.Context, id, reason string) error {
	if err := storage.CheckBan("event id", id, reason); err != nil {
		return fmt.Errorf("postgres record event ban: %w", err)
	}
	raw, _ := decodeHex32(id)
	return a.exec(ctx, "record event ban", `INSERT INTO admin_event_bans (id, reason, banned_at) VALUES ($1, $2, $3)
		ON CONFLICT (id) DO UPDATE SET reason = excluded.reason, banned_at = excluded.banned_at`, raw, reason, a.s.now())
}

// EventBans implements storage.AdminState.
func (a adminState) EventBans(ctx context.Context) ([]storage.AdminRecord, error) {
	return a.records(ctx, "event bans", `SELECT id, reason, banned_at FROM admin_event_bans ORDER BY id`)
}

// RecordPubKeyBan implements storage.AdminState.
func (a adminState) RecordPubKeyBan(ctx context.Context, pubkey, reason string) error {
	if err := storage.CheckBan("pubkey", pubkey, reason); err != nil {
		return fmt.Errorf("postgres record pubkey ban: %w", err)
	}
	raw, _ := decodeHex32(pubkey)
	return a.exec(ctx, "record pubkey ban", `INSERT INTO admin_pubkey_bans (pubkey, reason, banned_at) VALUES ($1, $2, $3)
		ON CONFLICT (pubkey) DO UPDATE SET reason = excluded.reason, banned_at = excluded.banned_at`, raw, reason, a.s.now())
}

// PubKeyBans implements storage.AdminState.
func (a adminState) PubKeyBans(ctx context.Context) ([]storage.AdminRecord, error) {
	return a.records(ctx, "pubkey bans", `SELECT pubkey, reason, banned_at FROM admin_pubkey_bans ORDER BY pubkey`)
}

// records reads (raw key, reason, time) rows in the query's order; the
// byte order of raw keys is the order of their hex.
func (a adminState) records(ctx context.Context, what, sql string) ([]storage.AdminRecord, error) {
	if a.s.isClosed() {
		return nil, storage.ErrClosed
	}
	rows, err := a.s.pool.Query(ctx, sql)
	if err != nil {
		return nil, fmt.Errorf("postgres %s: %w", what, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.AdminRecord, error) {
		var (
			key []byte
			rec storage.AdminRecord
		)
		err := r.Scan(&key, &rec.Reason, &rec.At)
		rec.Key = hex.EncodeToString(key)
		return rec, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres %s: %w", what, err)
	}
	return out, nil
}

// BlockIP implements storage.AdminState.
func (a adminState) BlockIP(ctx context.Context, addr netip.Addr, reason string) error {
	if err := storage.CheckBlockedAddr(addr); err != nil {
		return fmt.Errorf("postgres block address: %w", err)
	}
	if err := storage.CheckAdminText("reason", reason); err != nil {
		return fmt.Errorf("postgres block address: %w", err)
	}
	return a.exec(ctx, "block address", `INSERT INTO admin_blocked_ips (addr, reason, blocked_at) VALUES ($1, $2, $3)
		ON CONFLICT (addr) DO UPDATE SET reason = excluded.reason, blocked_at = excluded.blocked_at`, addr.String(), reason, a.s.now())
}

// UnblockIP implements storage.AdminState.
func (a adminState) UnblockIP(ctx context.Context, addr netip.Addr) error {
	if err := storage.CheckBlockedAddr(addr); err != nil {
		return fmt.Errorf("postgres unblock address: %w", err)
	}
	return a.exec(ctx, "unblock address", `DELETE FROM admin_blocked_ips WHERE addr = $1`, addr.String())
}

// BlockedIPs implements storage.AdminState.
func (a adminState) BlockedIPs(ctx context.Context) ([]storage.BlockedIP, error) {
	if a.s.isClosed() {
		return nil, storage.ErrClosed
	}
	rows, err := a.s.pool.Query(ctx, `SELECT addr, reason, blocked_at FROM admin_blocked_ips`)
	if err != nil {
		return nil, fmt.Errorf("postgres blocked addresses: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.BlockedIP, error) {
		var (
			addr string
			b    storage.BlockedIP
		)
		if err := r.Scan(&addr, &b.Reason, &b.At); err != nil {
			return b, err
		}
		var err error
		b.Addr, err = netip.ParseAddr(addr)
		return b, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres blocked addresses: %w", err)
	}
	slices.SortFunc(out, func(x, y storage.BlockedIP) int { return x.Addr.Compare(y.Addr) })
	return out, nil
}

// SetSetting implements storage.AdminState.
func (a adminState) SetSetting(ctx context.Context, setting storage.Setting, value string) error {
	if err := storage.CheckSetting(setting); err != nil {
		return fmt.Errorf("postgres set setting: %w", err)
	}
	if err := storage.CheckAdminText(string(setting), value); err != nil {
		return fmt.Errorf("postgres set setting: %w", err)
	}
	return a.exec(ctx, "set setting", `INSERT INTO admin_settings (name, value, set_at) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value, set_at = excluded.set_at`, string(setting), value, a.s.now())
}

// Settings implements storage.AdminState.
func (a adminState) Settings(ctx context.Context) (map[storage.Setting]string, error) {
	if a.s.isClosed() {
		return nil, storage.ErrClosed
	}
	rows, err := a.s.pool.Query(ctx, `SELECT name, value FROM admin_settings`)
	if err != nil {
		return nil, fmt.Errorf("postgres settings: %w", err)
	}
	out := map[storage.Setting]string{}
	var name, value string
	_, err = pgx.ForEachRow(rows, []any{&name, &value}, func() error {
		out[storage.Setting(name)] = value
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres settings: %w", err)
	}
	return out, nil
}
