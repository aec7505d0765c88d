package server

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/burrow-relay/burrow/policy"
	"github.com/burrow-relay/burrow/storage"
	"github.com/nbd-wtf/go-nostr"
)

// The ordered-read extension (since_seq/1, DESIGN.md "Sequencing"): a REQ
// whose single filter is {"#h": [<h>], "since_seq": <c>} (optionally
// "kinds": [445] and "limit": <k>) gets group h's stored kind 445 events
// with seq > c in ascending seq, one page of at most k, each EVENT carrying
// a fourth element {"seq": n} ("released": true for a released Commit,
// "releases" on the Commit that replaced it); then EOSE ["finish"] and live
// events in seq order, or, when the page was cut short, EOSE ["more"] and
// CLOSED "more: after seq <m>" (NIP-67's hints; docs/commit-slots.md 5.1).

// orderedRead is one since_seq subscription's cursor.
type orderedRead struct {
	h        string
	after    int64 // the requested cursor c
	limit    int   // page size, clamped
	lastSent int64 // highest seq sent; guarded by the subscription's mu
}

// GroupWatcher is the part of an ordering layer (Config.BroadcastVia) that
// orders group events from a log: Watch is called when a subscription that can match group
// h's kind 445 events is registered, before its stored query runs, so the
// layer knows from which seq on the subscription relies on live delivery;
// Unwatch once for each Watch, when that subscription ends, so the layer
// keeps h's position exactly while some subscription relies on it.
type GroupWatcher interface {
	Watch(ctx context.Context, h string)
	Unwatch(h string)
}

// maxWatchedPerReq bounds the groups one REQ makes the ordering layer look
// up; further groups are ordered from their first live event on.
const maxWatchedPerReq = 64

// parseOrderedRead recognizes a since_seq REQ. It returns nil and "" for an
// ordinary REQ, the cursor for a well-formed one, or an "invalid:" reason.
func parseOrderedRead(raw []json.RawMessage, maxLimit int) (*orderedRead, string) {
	var fields []map[string]json.RawMessage
	found := false
	for _, r := range raw {
		var m map[string]json.RawMessage
		if json.Unmarshal(r, &m) != nil {
			return nil, "" // parseFilter reports it
		}
		if _, ok := m["since_seq"]; ok {
			found = true
		}
		fields = append(fields, m)
	}
	if !found {
		return nil, ""
	}
	if len(fields) != 1 {
		return nil, "invalid: a since_seq REQ takes exactly one filter"
	}
	o := &orderedRead{limit: maxLimit}
	for key, v := range fields[0] {
		switch key {
		case "since_seq":
			c, ok := nonNegativeInt(v)
			if !ok {
				return nil, "invalid: since_seq must be an integer >= 0"
			}
			o.after = c
		case "#h":
			var hs []string
			if json.Unmarshal(v, &hs) != nil || len(hs) != 1 {
				return nil, "invalid: since_seq needs exactly one #h value"
			}
			if !policy.IsGroupID(hs[0]) {
				return nil, "invalid: since_seq needs a #h value of 64 lowercase hex characters"
			}
			o.h = hs[0]
		case "kinds":
			var ks []int
			if json.Unmarshal(v, &ks) != nil || len(ks) != 1 || ks[0] != policy.KindGroupEvent {
				return nil, "invalid: since_seq reads kind 445 only (\"kinds\": [445] or no kinds)"
			}
		case "limit":
			k, ok := nonNegativeInt(v)
			if !ok {
				return nil, "invalid: limit must be an integer >= 0"
			}
			o.limit = int(min(k, int64(maxLimit)))
		default:
			return nil, fmt.Sprintf("invalid: a since_seq filter takes only #h, since_seq, kinds and limit, not %q", truncate(key, 32))
		}
	}
	if o.h == "" {
		return nil, "invalid: since_seq needs exactly one #h value"
	}
	return o, ""
}

func nonNegativeInt(v json.RawMessage) (int64, bool) {
	n, err := strconv.ParseInt(string(v), 10, 64)
	return n, err == nil && n >= 0
}

// filter is the NIP-01 filter live events are matched with.
func (o *orderedRead) filter() nostr.Filter {
	return nostr.Filter{Kinds: []int{policy.KindGroupEvent}, Tags: nostr.TagMap{"h": {o.h}}}
}

// seqSuffix ends a sequenced EVENT message: after the event, {"seq":n}
// (with "released":true for a released Commit, and "releases":{"id":..,
// "seq":..} for the Commit that replaced it), making
// ["EVENT",<sub>,<event>,{"seq":n}].
func seqSuffix(seq int64, released bool, releases *storage.Release) []byte {
	b := make([]byte, 0, 40)
	b = append(b, `,{"seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	if released {
		b = append(b, `,"released":true`...)
	}
	if releases != nil {
		b = append(b, `,"releases":{"id":`...)
		b = appendJSONString(b, releases.ID)
		b = append(b, `,"seq":`...)
		b = strconv.AppendInt(b, releases.Seq, 10)
		b = append(b, '}')
	}
	return append(b, "}]"...)
}

// sendOrderedPage sends one page of sub's group log. more reports that
// stored events remain after it. It reads at most storedPageBytes of events
// at a time and ends that read before writing them (see storedPageBytes).
func (c *conn) sendOrderedPage(ctx context.Context, sub *subscription) (more bool, err error) {
	o := sub.ordered
	sent := 0
	last := o.after
	for {
		at := time.Now()
		var page []storage.Sequenced
		pageBytes, cut := 0, false
		// One more than the page needs tells whether more remain.
		for item, err := range c.srv.store.GroupLog(ctx, o.h, last, o.limit-sent+1) {
			if err != nil {
				return false, err
			}
			if sent+len(page) == o.limit {
				more = true
				break
			}
			if pageBytes >= storedPageBytes {
				cut = true
				break
			}
			page = append(page, item)
			pageBytes += eventSize(item.Event)
		}
		for _, item := range page {
			m := outMsg{prefix: sub.prefix, body: marshalEvent(item.Event), suffix: seqSuffix(item.Seq, item.Released, item.Releases),
				event: true, id: idKey(item.Event.ID), at: at}
			if c.out.pushWait(ctx, m) != nil {
				return false, nil // the connection is gone
			}
			sent++
			last = item.Seq
		}
		if !cut {
			break
		}
	}
	sub.mu.Lock()
	o.lastSent = last
	sub.mu.Unlock()
	return more, nil
}

// watchGroups tells an ordering layer which groups a subscription with
// these filters relies on, and returns them for unwatchGroups.
func (s *Server) watchGroups(ctx context.Context, filters nostr.Filters) []string {
	w := s.watcher
	if w == nil {
		return nil
	}
	var watched []string
	for _, f := range filters {
		if len(f.Kinds) > 0 && !slices.Contains(f.Kinds, policy.KindGroupEvent) {
			continue
		}
		for _, h := range f.Tags["h"] {
			if len(watched) == maxWatchedPerReq {
				return watched
			}
			w.Watch(ctx, h)
			watched = append(watched, h)
		}
	}
	return watched
}

// unwatchGroups ends what watchGroups started.
func (s *Server) unwatchGroups(watched []string) {
	if w := s.watcher; w != nil {
		for _, h := range watched {
			w.Unwatch(h)
		}
	}
}
