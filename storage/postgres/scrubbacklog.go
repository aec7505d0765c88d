package postgres

import (
	"context"
	"fmt"
	"time"
)

// ScrubBacklog reports the KeyPackage scrub's unpaid debts: how many
// deletions wait for their content partition to be rewritten, and how
// long the oldest has waited (0 with none). A backlog that keeps growing,
// or an oldest debt far past Config.KeyPackageRewriteWithin, means
// deleted KeyPackage bytes stay in the database files
// (docs/keypackage-scrub.md).
func (s *Store) ScrubBacklog(ctx context.Context) (debts int64, oldest time.Duration, err error) {
	var secs float64
	err = s.pool.QueryRow(ctx, `SELECT count(*), COALESCE(EXTRACT(epoch FROM clock_timestamp() - min(deleted_at)), 0)::float8
		FROM keypackage_scrub`).Scan(&debts, &secs)
	if err != nil {
		return 0, 0, fmt.Errorf("postgres: read the scrub backlog: %w", err)
	}
	return debts, time.Duration(secs * float64(time.Second)), nil
}
