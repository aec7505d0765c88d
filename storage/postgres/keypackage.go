package postgres

import (
	"context"
	"errors"

	"github.com/burrow-relay/burrow/storage"
	"github.com/nbd-wtf/go-nostr"
)

// errNotYet marks contract methods this backend does not implement yet.
var errNotYet = errors.New("postgres: not implemented yet")

// SaveKeyPackage implements storage.Store.
func (s *Store) SaveKeyPackage(ctx context.Context, ev *nostr.Event, kp storage.KeyPackage) (storage.Result, error) {
	return storage.Result{}, errNotYet
}

// Ban implements storage.Store.
func (s *Store) Ban(ctx context.Context, pubkey string) ([]storage.Deletion, error) {
	return nil, errNotYet
}

// BannedPubKeys implements storage.Store.
func (s *Store) BannedPubKeys(ctx context.Context) ([]string, error) {
	return nil, errNotYet
}
