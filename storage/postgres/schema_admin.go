package postgres

// migrationAdmin (migration 8) adds the NIP-86 records of
// storage.AdminState, shared by every instance on the database: the
// reasons admins gave for banned events and pubkeys (the bans themselves
// are tombstones and banned_pubkeys), the blocked client addresses and the
// relay settings admins changed. Reasons and values are text the store has
// checked (storage.CheckAdminText); addresses are netip.Addr text.
const migrationAdmin = `
CREATE TABLE admin_event_bans (
	id         bytea       PRIMARY KEY,
	reason     text        NOT NULL,
	banned_at  timestamptz NOT NULL
);

CREATE TABLE admin_pubkey_bans (
	pubkey     bytea       PRIMARY KEY,
	reason     text        NOT NULL,
	banned_at  timestamptz NOT NULL
);

CREATE TABLE admin_blocked_ips (
	addr       text        PRIMARY KEY,
	reason     text        NOT NULL,
	blocked_at timestamptz NOT NULL
);

CREATE TABLE admin_settings (
	name       text        PRIMARY KEY,
	value      text        NOT NULL,
	set_at     timestamptz NOT NULL
);
`
