package sqlite

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/burrow-relay/burrow/storage"
)

// adminState keeps storage.AdminState in the tables of migration 7, written
// by the single writer like everything else, so every process on the file
// reads the same records.
type adminState struct{ s *Store }

// AdminState implements storage.Store.
func (s *Store) AdminState() storage.AdminState { return adminState{s} }

// exec runs one write statement in the writer's transaction.
func (a adminState) exec(ctx context.Context, op, query string, args ...any) error {
	if a.s.isClosed.Load() {
		return storage.ErrClosed
	}
	return a.s.write(ctx, func(tx *txn) error {
		tx.dirty = true
		if _, err := tx.tx.ExecContext(tx.ctx, query, args...); err != nil {
			return fmt.Errorf("sqlite: %s: %w", op, err)
		}
		return nil
	})
}

// RecordEventBan implements storage.AdminState.
func (a adminState) RecordEventBan(ctx context.Context, id, reason string) error {
	if err := storage.CheckBan("event id", id, reason); err != nil {
		return fmt.Errorf("sqlite: record event ban: %w", err)
	}
	return a.exec(ctx, "record event ban", `INSERT INTO admin_event_bans (id, reason, banned_at) VALUES (?, ?, ?)
	ON CONFLICT (id) DO UPDATE SET reason = excluded.reason, banned_at = excluded.banned_at`, id, reason, time.Now().UnixMilli())
}

// EventBans implements storage.AdminState.
func (a adminState) EventBans(ctx context.Context) ([]storage.AdminRecord, error) {
	return a.records(ctx, "event bans", `SELECT id, reason, banned_at FROM admin_event_bans ORDER BY id`)
}

// RecordPubKeyBan implements storage.AdminState.
func (a adminState) RecordPubKeyBan(ctx context.Context, pubkey, reason string) error {
	if err := storage.CheckBan("pubkey", pubkey, reason); err != nil {
		return fmt.Errorf("sqlite: record pubkey ban: %w", err)
	}
	return a.exec(ctx, "record pubkey ban", `INSERT INTO admin_pubkey_bans (pubkey, reason, banned_at) VALUES (?, ?, ?)
	ON CONFLICT (pubkey) DO UPDATE SET reason = excluded.reason, banned_at = excluded.banned_at`, pubkey, reason, time.Now().UnixMilli())
}

// PubKeyBans implements storage.AdminState.
func (a adminState) PubKeyBans(ctx context.Context) ([]storage.AdminRecord, error) {
	return a.records(ctx, "pubkey bans", `SELECT pubkey, reason, banned_at FROM admin_pubkey_bans ORDER BY pubkey`)
}

// records reads (key, reason, Unix milliseconds) rows in the query's
// order.
func (a adminState) records(ctx context.Context, what, query string) ([]storage.AdminRecord, error) {
	if a.s.isClosed.Load() {
		return nil, storage.ErrClosed
	}
	rows, err := a.s.readDB.QueryContext(ctx, query)
	if err != nil {
		return nil, a.s.readErr(what, err)
	}
	defer rows.Close()
	var out []storage.AdminRecord
	for rows.Next() {
		var (
			rec storage.AdminRecord
			at  int64
		)
		if err := rows.Scan(&rec.Key, &rec.Reason, &at); err != nil {
			return nil, a.s.readErr(what, err)
		}
		rec.At = time.UnixMilli(at)
		out = append(out, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, a.s.readErr(what, err)
	}
	return out, nil
}

// BlockIP implements storage.AdminState.
func (a adminState) BlockIP(ctx context.Context, addr netip.Addr, reason string) error {
	if err := storage.CheckBlockedAddr(addr); err != nil {
		return fmt.Errorf("sqlite: block address: %w", err)
	}
	if err := storage.CheckAdminText("reason", reason); err != nil {
		return fmt.Errorf("sqlite: block address: %w", err)
	}
	return a.exec(ctx, "block address", `INSERT INTO admin_blocked_ips (addr, reason, blocked_at) VALUES (?, ?, ?)
	ON CONFLICT (addr) DO UPDATE SET reason = excluded.reason, blocked_at = excluded.blocked_at`, addr.String(), reason, time.Now().UnixMilli())
}

// UnblockIP implements storage.AdminState.
func (a adminState) UnblockIP(ctx context.Context, addr netip.Addr) error {
	if err := storage.CheckBlockedAddr(addr); err != nil {
		return fmt.Errorf("sqlite: unblock address: %w", err)
	}
	return a.exec(ctx, "unblock address", `DELETE FROM admin_blocked_ips WHERE addr = ?`, addr.String())
}

// BlockedIPs implements storage.AdminState.
func (a adminState) BlockedIPs(ctx context.Context) ([]storage.BlockedIP, error) {
	if a.s.isClosed.Load() {
		return nil, storage.ErrClosed
	}
	rows, err := a.s.readDB.QueryContext(ctx, `SELECT addr, reason, blocked_at FROM admin_blocked_ips`)
	if err != nil {
		return nil, a.s.readErr("blocked addresses", err)
	}
	defer rows.Close()
	var out []storage.BlockedIP
	for rows.Next() {
		var (
			b    storage.BlockedIP
			addr string
			at   int64
		)
		if err := rows.Scan(&addr, &b.Reason, &at); err != nil {
			return nil, a.s.readErr("blocked addresses", err)
		}
		if b.Addr, err = netip.ParseAddr(addr); err != nil {
			return nil, fmt.Errorf("sqlite: blocked addresses: %w", err)
		}
		b.At = time.UnixMilli(at)
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, a.s.readErr("blocked addresses", err)
	}
	slices.SortFunc(out, func(x, y storage.BlockedIP) int { return x.Addr.Compare(y.Addr) })
	return out, nil
}

// SetSetting implements storage.AdminState.
func (a adminState) SetSetting(ctx context.Context, setting storage.Setting, value string) error {
	if err := storage.CheckSetting(setting); err != nil {
		return fmt.Errorf("sqlite: set setting: %w", err)
	}
	if err := storage.CheckAdminText(string(setting), value); err != nil {
		return fmt.Errorf("sqlite: set setting: %w", err)
	}
	return a.exec(ctx, "set setting", `INSERT INTO admin_settings (name, value, set_at) VALUES (?, ?, ?)
	ON CONFLICT (name) DO UPDATE SET value = excluded.value, set_at = excluded.set_at`, string(setting), value, time.Now().UnixMilli())
}

// Settings implements storage.AdminState.
func (a adminState) Settings(ctx context.Context) (map[storage.Setting]string, error) {
	if a.s.isClosed.Load() {
		return nil, storage.ErrClosed
	}
	rows, err := a.s.readDB.QueryContext(ctx, `SELECT name, value FROM admin_settings`)
	if err != nil {
		return nil, a.s.readErr("settings", err)
	}
	defer rows.Close()
	out := map[storage.Setting]string{}
	for rows.Next() {
		var name, value string
		if err := rows.Scan(&name, &value); err != nil {
			return nil, a.s.readErr("settings", err)
		}
		out[storage.Setting(name)] = value
	}
	if err := rows.Err(); err != nil {
		return nil, a.s.readErr("settings", err)
	}
	return out, nil
}
