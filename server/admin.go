package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"

	"github.com/burrow-relay/burrow/policy"
	"github.com/burrow-relay/burrow/storage"
	"github.com/fiatjaf/khatru"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip11"
	"github.com/nbd-wtf/go-nostr/nip86"
)

// supportedNIPs are the NIPs the engine implements today.
func supportedNIPs() []any { return []any{1, 9, 11, 40, 42, 45, 62, 70, 86} }

// extSinceSeq names the ordered-read extension (DESIGN.md "Sequencing").
const extSinceSeq = "since_seq/1"

// groupEventsInfo describes the kind 445 policy in NIP-11.
func (s *Server) groupEventsInfo() map[string]any {
	return map[string]any{
		"max_content_length": s.limits.MaxGroupContentLength,
		"retention_seconds":  int64(s.cfg.GroupRetention.Seconds()), // 0: kept until deleted
		"per_group_rate":     s.limits.GroupRate,
		"per_group_burst":    s.limits.GroupBurst,
		"sequenced":          true,
		"auth_required":      false,
	}
}

// limitsInfo is the NIP-11 "burrow_limits" object: every limit that
// NIP-11's limitation object has no field for (docs: README "Limits and
// abuse"). Rates are per second; sizes in bytes; times in seconds.
func (s *Server) limitsInfo() map[string]any {
	l := s.limits
	return map[string]any{
		"connections_per_address":      l.ConnectionsPerIP,
		"event_rate_per_address":       l.EventRate,
		"event_burst_per_address":      l.EventBurst,
		"event_rate_per_connection":    l.ConnEventRate,
		"event_burst_per_connection":   l.ConnEventBurst,
		"request_rate_per_address":     l.RequestRate,
		"request_burst_per_address":    l.RequestBurst,
		"request_rate_per_connection":  l.ConnRequestRate,
		"request_burst_per_connection": l.ConnRequestBurst,
		"filter_values_per_connection": l.MaxFilterValues,
		"filter_values_per_address":    l.MaxFilterValuesPerIP,
		"stored_queries_per_address":   l.MaxQueriesPerIP,
		"count_timeout_seconds":        l.CountTimeout.Seconds(),
		"outbound_queue_messages":      l.OutboundQueue,
		"outbound_queue_bytes":         l.OutboundBytes,
		"write_timeout_seconds":        l.WriteTimeout.Seconds(),
		"ipv6_prefix_bits":             l.IPv6PrefixBits,
	}
}

// relayInfo holds the NIP-11 fields admins can change at run time. khatru's
// Info document itself is never mutated after New, so NIP-11 requests
// reading it cannot race with NIP-86 changes.
type relayInfo struct {
	mu          sync.RWMutex
	name        string
	description string
}

// bannedEvents remembers NIP-86 banevent calls made to this process, for
// listbannedevents (the tombstones themselves live in the store), and the
// reasons given to banpubkey (the bans themselves live in the store).
type bannedEvents struct {
	mu         sync.Mutex
	list       []nip86.IDReason
	pubReasons map[string]string
}

func (s *Server) baseInfo() *nip11.RelayInformationDocument {
	l := s.limits
	return &nip11.RelayInformationDocument{
		Name:          s.cfg.Name,
		Description:   s.cfg.Description,
		Software:      software,
		Version:       s.cfg.Version,
		SupportedNIPs: supportedNIPs(),
		Limitation: &nip11.RelayLimitationDocument{
			MaxMessageLength: l.MaxMessageLength,
			MaxSubscriptions: l.MaxSubscriptions,
			MaxFilters:       l.MaxFilters,
			MaxLimit:         l.MaxLimit,
			MaxSubidLength:   l.MaxSubIDLength,
			MaxEventTags:     l.MaxEventTags,
			MaxContentLength: l.MaxContentLength,
			AuthRequired:     false,
			RestrictedWrites: s.cfg.Kinds.Restricted(),
		},
	}
}

func (s *Server) overwriteInfo(_ context.Context, _ *http.Request, info nip11.RelayInformationDocument) nip11.RelayInformationDocument {
	s.info.mu.RLock()
	info.Name, info.Description = s.info.name, s.info.description
	s.info.mu.RUnlock()
	info.SupportedNIPs = supportedNIPs()
	return info
}

// serveNIP11 lets khatru write the document, then adds the limitation fields
// go-nostr's type lacks (created_at bounds, in seconds relative to now).
func (s *Server) serveNIP11(w http.ResponseWriter, r *http.Request) {
	rec := &bufferedResponse{header: w.Header(), status: http.StatusOK}
	s.relay.ServeHTTP(rec, r)
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(rec.body.Bytes()))
	dec.UseNumber()
	if rec.status != http.StatusOK || dec.Decode(&doc) != nil {
		w.WriteHeader(rec.status)
		_, _ = w.Write(rec.body.Bytes())
		return
	}
	lim, _ := doc["limitation"].(map[string]any)
	if lim == nil {
		lim = map[string]any{}
		doc["limitation"] = lim
	}
	lim["created_at_upper_limit"] = int64(s.limits.CreatedAtFuture.Seconds())
	if s.limits.CreatedAtPast > 0 {
		lim["created_at_lower_limit"] = int64(s.limits.CreatedAtPast.Seconds())
	}
	if s.cfg.Kinds.Restricted() {
		doc["accepted_kinds"] = s.cfg.Kinds.List()
	}
	exts := []string{extSinceSeq}
	for _, h := range s.cfg.SaveHooks {
		if ip, ok := h.(InfoProvider); ok {
			name, value := ip.NIP11Field()
			doc[name] = value
		}
		if ep, ok := h.(ExtensionProvider); ok {
			exts = append(exts, ep.Extensions()...)
		}
	}
	// supported_extensions is the field any relay can use for these
	// extensions (docs/commit-slots.md section 4); burrow_extensions is
	// kept for clients that read it.
	doc["supported_extensions"] = exts
	doc["burrow_extensions"] = exts
	doc["group_events"] = s.groupEventsInfo()
	doc["burrow_limits"] = s.limitsInfo()
	doc["gift_wraps"] = map[string]any{
		"kind":                kindGiftWrap,
		"read_auth_required":  true, // served only to the NIP-42 pubkey in the wrap's p tag
		"write_auth_required": false,
	}
	out, err := json.Marshal(doc)
	if err != nil {
		http.Error(w, "encoding relay information", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header         { return b.header }
func (b *bufferedResponse) Write(p []byte) (int, error) { return b.body.Write(p) }
func (b *bufferedResponse) WriteHeader(status int)      { b.status = status }

// checkManagementAuth pre-checks the NIP-98 header khatru will read: khatru
// does not check the kind and panics on a missing "u" tag.
func checkManagementAuth(r *http.Request) string {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Nostr ")
	if !ok {
		return "missing auth"
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(token))
	if err != nil {
		return "invalid base64 auth"
	}
	var ev nostr.Event
	if err := ev.UnmarshalJSON(raw); err != nil {
		return "invalid auth event json"
	}
	if ev.Kind != nostr.KindHTTPAuth {
		return "auth event must be kind 27235"
	}
	if ev.Tags.Find("u") == nil {
		return "auth event has no 'u' tag"
	}
	if ev.Tags.Find("payload") == nil {
		return "auth event has no 'payload' tag"
	}
	return ""
}

func writeManagementError(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "application/nostr+json+rpc")
	w.WriteHeader(http.StatusUnauthorized)
	_ = json.NewEncoder(w).Encode(nip86.Response{Error: msg})
}

// managementAPI wires the NIP-86 methods Burrow supports. Every call is
// refused unless its NIP-98 signer is one of Config.Admins.
func (s *Server) managementAPI() khatru.RelayManagementAPI {
	return khatru.RelayManagementAPI{
		RejectAPICall: []func(ctx context.Context, mp nip86.MethodParams) (bool, string){
			func(ctx context.Context, mp nip86.MethodParams) (bool, string) {
				pk := khatru.GetAuthed(ctx)
				if !s.admins[pk] {
					s.log.Warn("refused management call", "method", mp.MethodName(), "pubkey", pk)
					return true, "unauthorized: only relay admins may call the management API"
				}
				s.log.Info("management call", "method", mp.MethodName(), "pubkey", pk)
				return false, ""
			},
		},
		BanPubKey:              s.banPubKey,
		ListBannedPubKeys:      s.listBannedPubKeys,
		BanEvent:               s.banEvent,
		ListBannedEvents:       s.listBannedEvents,
		ChangeRelayName:        s.changeName,
		ChangeRelayDescription: s.changeDescription,
		BlockIP:                s.blockIP,
		UnblockIP:              s.unblockIP,
		ListBlockedIPs:         s.listBlockedIPs,
	}
}

func (s *Server) banEvent(ctx context.Context, id, reason string) error {
	if !policy.IsLowerHex(id, 64) {
		return errors.New("event id must be 64 lowercase hex characters")
	}
	// The admin's HTTP request may end (disconnect, write timeout) while the
	// deletion runs; it is carried out anyway rather than left to chance
	// (the store bounds its own waits).
	deleted, err := s.store.Delete(context.WithoutCancel(ctx), []string{id}, storage.ReasonAdmin)
	if err != nil {
		s.log.Error("banning event", "id", id, "err", err)
		return errors.New("could not delete the event")
	}
	s.removed(deleted)
	s.bans.mu.Lock()
	s.bans.list = append(s.bans.list, nip86.IDReason{ID: id, Reason: reason})
	s.bans.mu.Unlock()
	return nil
}

// banPubKey deletes and tombstones every event of pubkey and refuses its
// future events (storage.Store.Ban).
func (s *Server) banPubKey(ctx context.Context, pubkey, reason string) error {
	if !policy.IsLowerHex(pubkey, 64) {
		return errors.New("pubkey must be 64 lowercase hex characters")
	}
	deleted, err := s.store.Ban(context.WithoutCancel(ctx), pubkey) // as in banEvent
	if err != nil {
		s.log.Error("banning pubkey", "pubkey", pubkey, "err", err)
		return errors.New("could not ban the pubkey")
	}
	s.removed(deleted)
	s.log.Info("banned pubkey", "pubkey", pubkey, "deleted", len(deleted))
	s.bans.mu.Lock()
	if s.bans.pubReasons == nil {
		s.bans.pubReasons = map[string]string{}
	}
	s.bans.pubReasons[pubkey] = reason
	s.bans.mu.Unlock()
	return nil
}

// listBannedPubKeys lists the store's bans, with the reason when the ban
// was made through this process.
func (s *Server) listBannedPubKeys(ctx context.Context) ([]nip86.PubKeyReason, error) {
	pks, err := s.store.BannedPubKeys(ctx)
	if err != nil {
		s.log.Error("listing banned pubkeys", "err", err)
		return nil, errors.New("could not list banned pubkeys")
	}
	out := make([]nip86.PubKeyReason, len(pks))
	s.bans.mu.Lock()
	defer s.bans.mu.Unlock()
	for i, pk := range pks {
		out[i] = nip86.PubKeyReason{PubKey: pk, Reason: s.bans.pubReasons[pk]}
	}
	return out, nil
}

func (s *Server) listBannedEvents(context.Context) ([]nip86.IDReason, error) {
	s.bans.mu.Lock()
	defer s.bans.mu.Unlock()
	return append([]nip86.IDReason{}, s.bans.list...), nil
}

func (s *Server) changeName(_ context.Context, name string) error {
	s.info.mu.Lock()
	s.info.name = name
	s.info.mu.Unlock()
	return nil
}

func (s *Server) changeDescription(_ context.Context, desc string) error {
	s.info.mu.Lock()
	s.info.description = desc
	s.info.mu.Unlock()
	return nil
}

func (s *Server) blockIP(_ context.Context, ip net.IP, reason string) error {
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		return fmt.Errorf("invalid address %v", ip)
	}
	addr = addr.Unmap()
	s.blocklist.Block(addr, reason)
	// A block also ends the address's open connections.
	s.conns.mu.Lock()
	for c := range s.conns.m {
		if c.ip == addr {
			c.kill("address blocked")
		}
	}
	s.conns.mu.Unlock()
	return nil
}

func (s *Server) unblockIP(_ context.Context, ip net.IP, _ string) error {
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		return fmt.Errorf("invalid address %v", ip)
	}
	s.blocklist.Unblock(addr)
	return nil
}

func (s *Server) listBlockedIPs(context.Context) ([]nip86.IPReason, error) {
	entries := s.blocklist.List()
	out := make([]nip86.IPReason, len(entries))
	for i, e := range entries {
		out[i] = nip86.IPReason{IP: e.IP.String(), Reason: e.Reason}
	}
	return out, nil
}
