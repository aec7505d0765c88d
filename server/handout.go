package server

import (
	"context"
	"errors"
	"time"

	"github.com/burrow-relay/burrow/storage"
	"github.com/nbd-wtf/go-nostr"
)

// ReqHandler serves some REQs' stored results its own way instead of the
// plain stored query (keypackages.Handout hands out KeyPackages once). The
// subscription is otherwise normal: its events are sent, then EOSE, then
// live events matching its filters.
type ReqHandler interface {
	// HandlesReq reports whether this handler serves a REQ with filters.
	HandlesReq(filters nostr.Filters) bool
	// ServeReq returns the stored events to send to requester (the
	// connection's NIP-42 pubkey, "" when it has not authenticated). An
	// error satisfying Refusal closes the subscription with its message;
	// any other error is answered "error:".
	ServeReq(ctx context.Context, st storage.Store, requester string, filters nostr.Filters) ([]*nostr.Event, error)
}

// ClaimSweeper deletes what a ReqHandler handed out after a while; the
// server runs SweepClaims every SweepInterval until Shutdown.
type ClaimSweeper interface {
	SweepInterval() time.Duration
	SweepClaims(ctx context.Context, st storage.Store, now time.Time) ([]storage.Deletion, error)
}

// sendStoredOrHandout sends sub's stored events, through Config.ReqHandler
// when it serves these filters; more is sendStored's. A hand-out is always
// complete ("finish"): it serves what it hands out for this request, and
// asking again (with until or otherwise) would not page through other
// KeyPackages, so ["more"] would only invite a pointless re-query.
func (c *conn) sendStoredOrHandout(ctx context.Context, sub *subscription) (more bool, err error) {
	h := c.srv.cfg.ReqHandler
	if h == nil || !h.HandlesReq(sub.filters) {
		return c.sendStored(ctx, sub)
	}
	evs, err := h.ServeReq(ctx, c.srv.store, c.authedPubKey(), sub.filters)
	if err != nil {
		return false, err
	}
	for _, ev := range evs {
		sub.mu.Lock()
		sub.sent[idKey(ev.ID)] = struct{}{}
		sub.mu.Unlock()
		if !c.send(ctx, encodeEvent(sub.prefix, marshalEvent(ev))) {
			return false, nil // the connection is gone; nothing to report
		}
	}
	return false, nil
}

// reqRefusal returns the CLOSED message of a refused REQ, or "" when err
// is a failure rather than a refusal.
func reqRefusal(err error) string {
	var r Refusal
	if errors.As(err, &r) {
		return r.OKMessage()
	}
	return ""
}

// queryFailure is err unless it is a refusal, which is no failed query.
func queryFailure(err error) error {
	if reqRefusal(err) != "" {
		return nil
	}
	return err
}

// startClaimSweep runs Config.ClaimSweeper until ctx ends; the
// returned channel closes when it has stopped (at once without a sweeper).
func (s *Server) startClaimSweep(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	sw := s.cfg.ClaimSweeper
	if sw == nil {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		t := time.NewTicker(sw.SweepInterval())
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			deleted, err := sw.SweepClaims(ctx, s.store, time.Now())
			switch {
			case err != nil && ctx.Err() == nil:
				s.log.Error("deleting claimed events", "err", err)
			case len(deleted) > 0:
				s.removed(deleted)
				s.log.Info("deleted claimed events", "count", len(deleted))
			}
		}
	}()
	return done
}
