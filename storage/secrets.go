package storage

import "context"

// Secrets is implemented by backends that keep random secrets for the
// relay's own use, shared by every process on the database (the key that
// authenticates the Redis bus between instances, so that only instances
// of one deployment, which share its database, can speak on it). A secret
// never leaves the database except to its caller, and is never an event.
type Secrets interface {
	// Secret returns the secret called name: size random bytes drawn the
	// first time any process asks, the same bytes ever after. Concurrent
	// first calls on several processes agree on one value.
	Secret(ctx context.Context, name string, size int) ([]byte, error)
}
