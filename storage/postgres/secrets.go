package postgres

import (
	"context"
	"crypto/rand"
	"fmt"

	"github.com/burrow-relay/burrow/storage"
)

var _ storage.Secrets = (*Store)(nil)

// Secret implements storage.Secrets: the primary key makes the first
// value inserted the one every instance reads.
func (s *Store) Secret(ctx context.Context, name string, size int) ([]byte, error) {
	if s.isClosed() {
		return nil, storage.ErrClosed
	}
	ctx, err := writeContext(ctx)
	if err != nil {
		return nil, err
	}
	fresh := make([]byte, size)
	rand.Read(fresh)
	// Two statements: the SELECT's snapshot, taken after the INSERT has
	// finished (waiting out a concurrent first insert), sees the winner.
	if _, err := s.pool.Exec(ctx, `INSERT INTO relay_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, name, fresh); err != nil {
		return nil, fmt.Errorf("postgres secret: %w", err)
	}
	var value []byte
	if err := s.pool.QueryRow(ctx, `SELECT value FROM relay_secrets WHERE name = $1`, name).Scan(&value); err != nil {
		return nil, fmt.Errorf("postgres secret: %w", err)
	}
	return value, nil
}
