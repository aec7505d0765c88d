package sqlite

import (
	"context"
	"crypto/rand"
	"fmt"

	"github.com/burrow-relay/burrow/storage"
)

var _ storage.Secrets = (*Store)(nil)

// Secret implements storage.Secrets: the first call draws the value and
// stores it in the writer's transaction, so processes sharing the file
// agree on one.
func (s *Store) Secret(ctx context.Context, name string, size int) ([]byte, error) {
	if s.isClosed.Load() {
		return nil, storage.ErrClosed
	}
	fresh := make([]byte, size)
	rand.Read(fresh)
	var value []byte
	err := s.write(ctx, func(tx *txn) error {
		tx.dirty = true
		if _, err := tx.tx.ExecContext(tx.ctx, `INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`, name, fresh); err != nil {
			return fmt.Errorf("sqlite: store secret: %w", err)
		}
		if err := tx.tx.QueryRowContext(tx.ctx, `SELECT value FROM secrets WHERE name = ?`, name).Scan(&value); err != nil {
			return fmt.Errorf("sqlite: read secret: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return value, nil
}
