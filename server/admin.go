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
	"time"

	"github.com/burrow-relay/burrow/policy"
	"github.com/burrow-relay/burrow/storage"
	"github.com/fiatjaf/khatru"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip11"
	"github.com/nbd-wtf/go-nostr/nip86"
)

// supportedNIPs are the NIPs the engine implements today, NIP-77 only when
// it is enabled.
func (s *Server) supportedNIPs() []any {
	nips := []any{1, 9, 11, 40, 42, 45, 62, 67, 70}
	if s.cfg.Negentropy {
		nips = append(nips, 77)
	}
	return append(nips, 86)
}

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
		"connections_per_address":            l.ConnectionsPerIP,
		"event_rate_per_address":             l.EventRate,
		"event_burst_per_address":            l.EventBurst,
		"event_rate_per_connection":          l.ConnEventRate,
		"event_burst_per_connection":         l.ConnEventBurst,
		"request_rate_per_address":           l.RequestRate,
		"request_burst_per_address":          l.RequestBurst,
		"request_rate_per_connection":        l.ConnRequestRate,
		"request_burst_per_connection":       l.ConnRequestBurst,
		"filter_values_per_connection":       l.MaxFilterValues,
		"filter_values_per_address":          l.MaxFilterValuesPerIP,
		"stored_queries_per_address":         l.MaxQueriesPerIP,
		"count_timeout_seconds":              l.CountTimeout.Seconds(),
		"negentropy_max_ids":                 l.NegMaxIDs,
		"negentropy_sessions_per_connection": l.NegSessions,
		"negentropy_bytes_per_connection":    l.NegBytes,
		"negentropy_bytes_per_address":       l.NegBytesPerIP,
		"negentropy_idle_timeout_seconds":    l.NegIdleTimeout.Seconds(),
		"outbound_queue_messages":            l.OutboundQueue,
		"outbound_queue_bytes":               l.OutboundBytes,
		"write_timeout_seconds":              l.WriteTimeout.Seconds(),
		"ipv6_prefix_bits":                   l.IPv6PrefixBits,
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

func (s *Server) baseInfo() *nip11.RelayInformationDocument {
	l := s.limits
	return &nip11.RelayInformationDocument{
		Name:          s.cfg.Name,
		Description:   s.cfg.Description,
		Software:      software,
		Version:       s.cfg.Version,
		SupportedNIPs: s.supportedNIPs(),
		Limitation: &nip11.RelayLimitationDocument{
			MaxMessageLength: l.MaxMessageLength,
			MaxSubscriptions: l.MaxSubscriptions,
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
	info.SupportedNIPs = s.supportedNIPs()
	return info
}

// serveNIP11 lets khatru write the document, then adds the limitation fields
// go-nostr's type lacks (max_filters, and created_at bounds in seconds
// relative to now).
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
	// NIP-11 has max_filters; go-nostr's type dropped it in v0.52.
	lim["max_filters"] = s.limits.MaxFilters
	lim["created_at_upper_limit"] = int64(s.limits.CreatedAtFuture.Seconds())
	if s.limits.CreatedAtPast > 0 {
		lim["created_at_lower_limit"] = int64(s.limits.CreatedAtPast.Seconds())
	} else {
		delete(lim, "created_at_lower_limit") // go-nostr writes 0, which would mean "now"
	}
	if s.cfg.Kinds.Restricted() {
		doc["accepted_kinds"] = s.cfg.Kinds.List()
	}
	exts := []string{extSinceSeq}
	for _, h := range s.cfg.Hooks {
		if h.NIP11 != nil {
			name, value := h.NIP11.NIP11Field()
			doc[name] = value
		}
		if h.Extensions != nil {
			exts = append(exts, h.Extensions.Extensions()...)
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
// does not check the kind and panics on a missing "u" tag, and go-nostr's
// libsecp256k1 CheckSignature (the production build's) panics on a pubkey
// or sig longer than 32 or 64 bytes, so their shape is checked here too.
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
	if !policy.IsLowerHex(ev.PubKey, 64) || !policy.IsLowerHex(ev.Sig, 128) {
		return "auth event pubkey and sig must be 64 and 128 lowercase hex characters"
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

// NIP-86 state kept in the store (storage.AdminState). Every change is
// written to the store first, then applied to this process's copy (the
// blocklist and the NIP-11 name and description); every process reloads
// its copy from the store at start and every Config.AdminRefresh, so a
// change made through any instance applies on all of them within that
// interval and survives restarts. The list methods answer from the store,
// so every instance gives the same answer.

// adminSync serializes the changes this process makes with the reloads, so
// a reload that read the store before a change cannot undo it here.
type adminSync struct {
	mu   sync.Mutex
	done chan struct{} // closed when the reload loop stops
	// failing is set while reloads fail, so an outage is logged once;
	// only the reload loop touches it.
	failing bool
}

// adminLoadTimeout bounds one reload of the administration state.
const adminLoadTimeout = 10 * time.Second

// loadAdmin replaces this process's blocklist, name and description with
// the store's, and ends the open connections of addresses blocked since
// the last load.
func (s *Server) loadAdmin(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, adminLoadTimeout)
	defer cancel()
	st := s.store.AdminState()
	s.admin.mu.Lock()
	defer s.admin.mu.Unlock()
	blocked, err := st.BlockedIPs(ctx)
	if err != nil {
		return fmt.Errorf("load blocked addresses: %w", err)
	}
	settings, err := st.Settings(ctx)
	if err != nil {
		return fmt.Errorf("load relay settings: %w", err)
	}

	stored := make(map[netip.Addr]string, len(blocked))
	for _, b := range blocked {
		stored[b.Addr] = b.Reason
	}
	for _, e := range s.blocklist.List() {
		if _, ok := stored[e.IP]; !ok {
			s.blocklist.Unblock(e.IP)
			s.log.Info("address block lifted in the store", "addr", e.IP.String())
		}
	}
	for addr, reason := range stored {
		fresh := !s.blocklist.Blocked(addr)
		s.blocklist.Block(addr, reason)
		if fresh { // blocked first, so no new connection slips in
			s.log.Info("address blocked in the store", "addr", addr.String(), "closed", s.closeConnsFrom(addr))
		}
	}

	name, ok := settings[storage.SettingName]
	if !ok {
		name = s.cfg.Name
	}
	desc, ok := settings[storage.SettingDescription]
	if !ok {
		desc = s.cfg.Description
	}
	s.info.mu.Lock()
	s.info.name, s.info.description = name, desc
	s.info.mu.Unlock()
	return nil
}

// reloadAdmin runs loadAdmin every Config.AdminRefresh until ctx ends.
func (s *Server) reloadAdmin(ctx context.Context) {
	defer close(s.admin.done)
	t := time.NewTicker(s.cfg.AdminRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := s.loadAdmin(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !s.admin.failing:
			s.admin.failing = true
			s.log.Warn("reloading the administration state failed; keeping the last one", "err", err)
		case err == nil && s.admin.failing:
			s.admin.failing = false
			s.log.Info("reloading the administration state works again")
		}
	}
}

// closeConnsFrom ends the open connections of addr and returns how many.
func (s *Server) closeConnsFrom(addr netip.Addr) int {
	n := 0
	s.conns.mu.Lock()
	for c := range s.conns.m {
		if c.ip == addr {
			c.kill("address blocked")
			n++
		}
	}
	s.conns.mu.Unlock()
	return n
}

func (s *Server) banEvent(ctx context.Context, id, reason string) error {
	if err := storage.CheckBan("event id", id, reason); err != nil {
		return err
	}
	// The admin's HTTP request may end (disconnect, write timeout) while the
	// deletion runs; it is carried out anyway rather than left to chance
	// (the store bounds its own waits).
	ctx = context.WithoutCancel(ctx)
	deleted, err := s.store.Delete(ctx, []string{id}, storage.ReasonAdmin)
	if err != nil {
		s.log.Error("banning event", "id", id, "err", err)
		return errors.New("could not delete the event")
	}
	s.removed(deleted)
	if err := s.store.AdminState().RecordEventBan(ctx, id, reason); err != nil {
		s.log.Error("recording an event ban", "id", id, "err", err)
		return errors.New("the event was deleted, but its ban could not be recorded")
	}
	return nil
}

// banPubKey deletes and tombstones every event of pubkey and refuses its
// future events (storage.Store.Ban), then records the reason.
func (s *Server) banPubKey(ctx context.Context, pubkey, reason string) error {
	if err := storage.CheckBan("pubkey", pubkey, reason); err != nil {
		return err
	}
	ctx = context.WithoutCancel(ctx) // as in banEvent
	deleted, err := s.store.Ban(ctx, pubkey)
	if err != nil {
		s.log.Error("banning pubkey", "pubkey", pubkey, "err", err)
		return errors.New("could not ban the pubkey")
	}
	s.removed(deleted)
	s.log.Info("banned pubkey", "pubkey", pubkey, "deleted", len(deleted))
	if err := s.store.AdminState().RecordPubKeyBan(ctx, pubkey, reason); err != nil {
		s.log.Error("recording a pubkey ban reason", "pubkey", pubkey, "err", err)
		return errors.New("the pubkey is banned, but the reason could not be recorded")
	}
	return nil
}

// listBannedPubKeys lists the store's bans (storage.Store.BannedPubKeys)
// with the reasons recorded for them (storage.AdminState.PubKeyBans).
func (s *Server) listBannedPubKeys(ctx context.Context) ([]nip86.PubKeyReason, error) {
	pks, err := s.store.BannedPubKeys(ctx)
	if err != nil {
		s.log.Error("listing banned pubkeys", "err", err)
		return nil, errors.New("could not list banned pubkeys")
	}
	recs, err := s.store.AdminState().PubKeyBans(ctx)
	if err != nil {
		s.log.Error("listing pubkey ban reasons", "err", err)
		return nil, errors.New("could not list banned pubkeys")
	}
	reasons := make(map[string]string, len(recs))
	for _, r := range recs {
		reasons[r.Key] = r.Reason
	}
	out := make([]nip86.PubKeyReason, len(pks))
	for i, pk := range pks {
		out[i] = nip86.PubKeyReason{PubKey: pk, Reason: reasons[pk]}
	}
	return out, nil
}

func (s *Server) listBannedEvents(ctx context.Context) ([]nip86.IDReason, error) {
	recs, err := s.store.AdminState().EventBans(ctx)
	if err != nil {
		s.log.Error("listing banned events", "err", err)
		return nil, errors.New("could not list banned events")
	}
	out := make([]nip86.IDReason, len(recs))
	for i, r := range recs {
		out[i] = nip86.IDReason{ID: r.Key, Reason: r.Reason}
	}
	return out, nil
}

func (s *Server) changeName(ctx context.Context, name string) error {
	return s.changeSetting(ctx, storage.SettingName, name, func(v string) { s.info.name = v })
}

func (s *Server) changeDescription(ctx context.Context, desc string) error {
	return s.changeSetting(ctx, storage.SettingDescription, desc, func(v string) { s.info.description = v })
}

// changeSetting stores a NIP-11 setting, then shows it here (apply runs
// under s.info.mu).
func (s *Server) changeSetting(ctx context.Context, setting storage.Setting, value string, apply func(string)) error {
	if err := storage.CheckAdminText(string(setting), value); err != nil {
		return err
	}
	s.admin.mu.Lock()
	defer s.admin.mu.Unlock()
	if err := s.store.AdminState().SetSetting(context.WithoutCancel(ctx), setting, value); err != nil {
		s.log.Error("changing a relay setting", "setting", string(setting), "err", err)
		return fmt.Errorf("could not change the relay %s", setting)
	}
	s.info.mu.Lock()
	apply(value)
	s.info.mu.Unlock()
	return nil
}

// adminAddr is the blocklist's form of a NIP-86 address.
func adminAddr(ip net.IP) (netip.Addr, error) {
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}, fmt.Errorf("invalid address %v", ip)
	}
	return addr.Unmap(), nil
}

func (s *Server) blockIP(ctx context.Context, ip net.IP, reason string) error {
	addr, err := adminAddr(ip)
	if err != nil {
		return err
	}
	if err := storage.CheckAdminText("reason", reason); err != nil {
		return err
	}
	s.admin.mu.Lock()
	defer s.admin.mu.Unlock()
	if err := s.store.AdminState().BlockIP(context.WithoutCancel(ctx), addr, reason); err != nil {
		s.log.Error("blocking an address", "addr", addr.String(), "err", err)
		return errors.New("could not block the address")
	}
	s.blocklist.Block(addr, reason)
	// A block also ends the address's open connections.
	s.log.Info("blocked address", "addr", addr.String(), "closed", s.closeConnsFrom(addr))
	return nil
}

func (s *Server) unblockIP(ctx context.Context, ip net.IP, _ string) error {
	addr, err := adminAddr(ip)
	if err != nil {
		return err
	}
	s.admin.mu.Lock()
	defer s.admin.mu.Unlock()
	if err := s.store.AdminState().UnblockIP(context.WithoutCancel(ctx), addr); err != nil {
		s.log.Error("unblocking an address", "addr", addr.String(), "err", err)
		return errors.New("could not unblock the address")
	}
	s.blocklist.Unblock(addr)
	return nil
}

func (s *Server) listBlockedIPs(ctx context.Context) ([]nip86.IPReason, error) {
	blocked, err := s.store.AdminState().BlockedIPs(ctx)
	if err != nil {
		s.log.Error("listing blocked addresses", "err", err)
		return nil, errors.New("could not list blocked addresses")
	}
	out := make([]nip86.IPReason, len(blocked))
	for i, b := range blocked {
		out[i] = nip86.IPReason{IP: b.Addr.String(), Reason: b.Reason}
	}
	return out, nil
}
