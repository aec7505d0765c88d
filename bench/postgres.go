package bench

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/jackc/pgx/v5"
)

// ErrDatabase marks a failure to create or drop a run's scratch database.
var ErrDatabase = errors.New("bench: scratch database")

// TempDatabase creates a fresh, empty database through adminURL (a postgres:// URL of a role
// allowed to CREATE DATABASE) and returns a URL for it, so that every run starts from the same
// state. drop removes it, ending any sessions still attached; call it once the relay using the
// database has stopped.
func TempDatabase(ctx context.Context, adminURL string) (dbURL string, drop func(context.Context) error, err error) {
	u, err := url.Parse(adminURL)
	if err != nil {
		return "", nil, fmt.Errorf("%w: parse admin URL: %w", ErrDatabase, err)
	}
	name := "burrow_bench_" + randomHex(6)

	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", nil, fmt.Errorf("%w: connect: %w", ErrDatabase, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// The name is ours (fixed prefix, hex suffix), so quoting it as an identifier is enough.
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", nil, fmt.Errorf("%w: create %s: %w", ErrDatabase, name, err)
	}

	dbu := *u
	dbu.Path = "/" + name
	drop = func(ctx context.Context) error {
		conn, err := pgx.Connect(ctx, adminURL)
		if err != nil {
			return fmt.Errorf("%w: connect to drop %s: %w", ErrDatabase, name, err)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("%w: drop %s: %w", ErrDatabase, name, err)
		}
		return nil
	}
	return dbu.String(), drop, nil
}

// PostgresDurability reports the server's fsync and synchronous_commit settings, which a
// benchmark report states next to its PostgreSQL figures.
func PostgresDurability(ctx context.Context, databaseURL string) (fsync, synchronousCommit string, err error) {
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return "", "", fmt.Errorf("%w: connect: %w", ErrDatabase, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := conn.QueryRow(ctx, "SHOW fsync").Scan(&fsync); err != nil {
		return "", "", fmt.Errorf("%w: show fsync: %w", ErrDatabase, err)
	}
	if err := conn.QueryRow(ctx, "SHOW synchronous_commit").Scan(&synchronousCommit); err != nil {
		return "", "", fmt.Errorf("%w: show synchronous_commit: %w", ErrDatabase, err)
	}
	return fsync, synchronousCommit, nil
}
