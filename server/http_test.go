package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/policy"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip86"
)

func (r *testRelay) httpURL() string { return strings.Replace(r.url, "ws://", "http://", 1) }

func TestNIP11(t *testing.T) {
	limits := testLimits()
	limits.CreatedAtPast = 48 * time.Hour
	r := startRelay(t, Config{Name: "burrow test", Description: "for tests", Version: "1.2.3",
		Kinds: policy.MarmotOnly(), Limits: limits}, newTestStore(t))
	doc := fetchNIP11(t, r)

	if doc["name"] != "burrow test" || doc["description"] != "for tests" || doc["version"] != "1.2.3" ||
		!strings.Contains(doc["software"].(string), "burrow") {
		t.Fatalf("identity fields wrong: %v", doc)
	}
	var nips []int
	for _, n := range doc["supported_nips"].([]any) {
		nips = append(nips, int(n.(float64)))
	}
	slices.Sort(nips)
	if want := []int{1, 9, 11, 40, 42, 45, 62, 67, 70, 86}; !slices.Equal(nips, want) {
		t.Fatalf("supported_nips %v, want %v", nips, want)
	}
	lim := doc["limitation"].(map[string]any)
	want := map[string]any{
		"max_message_length":     float64(limits.MaxMessageLength),
		"max_subscriptions":      float64(limits.MaxSubscriptions),
		"max_filters":            float64(limits.MaxFilters),
		"max_limit":              float64(limits.MaxLimit),
		"max_subid_length":       float64(limits.MaxSubIDLength),
		"max_event_tags":         float64(limits.MaxEventTags),
		"max_content_length":     float64(limits.MaxContentLength),
		"created_at_upper_limit": float64(limits.CreatedAtFuture / time.Second),
		"created_at_lower_limit": float64(limits.CreatedAtPast / time.Second),
		"auth_required":          false,
		"restricted_writes":      true,
	}
	for k, v := range want {
		if lim[k] != v {
			t.Errorf("limitation.%s = %v, want %v", k, lim[k], v)
		}
	}

	if got := doc["burrow_extensions"]; !slices.Equal(toStrings(got), []string{"since_seq/1"}) {
		t.Errorf("burrow_extensions = %v, want [since_seq/1] (commit slots come from their hook)", got)
	}
	ge, _ := doc["group_events"].(map[string]any)
	if ge["max_content_length"] != float64(limits.MaxGroupContentLength) || ge["auth_required"] != false ||
		ge["per_group_burst"] != float64(limits.GroupBurst) || ge["retention_seconds"] != float64(0) {
		t.Errorf("group_events = %v", ge)
	}

	bl, _ := doc["burrow_limits"].(map[string]any)
	for k, v := range map[string]any{
		"connections_per_address":      float64(limits.ConnectionsPerIP),
		"event_rate_per_address":       limits.EventRate,
		"event_burst_per_address":      float64(limits.EventBurst),
		"request_burst_per_connection": float64(limits.ConnRequestBurst),
		"filter_values_per_address":    float64(limits.MaxFilterValuesPerIP),
		"stored_queries_per_address":   float64(limits.MaxQueriesPerIP),
		"count_timeout_seconds":        limits.CountTimeout.Seconds(),
		"outbound_queue_messages":      float64(limits.OutboundQueue),
		"outbound_queue_bytes":         float64(limits.OutboundBytes),
		"write_timeout_seconds":        limits.WriteTimeout.Seconds(),
		"ipv6_prefix_bits":             float64(limits.IPv6PrefixBits),
	} {
		if bl[k] != v {
			t.Errorf("burrow_limits.%s = %v, want %v", k, bl[k], v)
		}
	}

	open := startRelay(t, Config{}, newTestStore(t))
	lim = fetchNIP11(t, open)["limitation"].(map[string]any)
	if lim["restricted_writes"] != false || lim["max_limit"] != float64(500) {
		t.Fatalf("default relay limitation %v, want restricted_writes false, max_limit 500", lim)
	}
	if _, ok := lim["created_at_lower_limit"]; ok {
		t.Fatalf("no lower bound configured but one is advertised")
	}
}

func toStrings(v any) []string {
	arr, _ := v.([]any)
	out := make([]string, len(arr))
	for i, x := range arr {
		out[i], _ = x.(string)
	}
	return out
}

func fetchNIP11(t *testing.T, r *testRelay) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, r.httpURL(), nil)
	req.Header.Set("Accept", "application/nostr+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/nostr+json" {
		t.Fatalf("NIP-11: status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// manage calls a NIP-86 method signed (NIP-98 style) by s.
func manage(t *testing.T, r *testRelay, s signer, method string, params ...any) nip86.Response {
	t.Helper()
	body, _ := json.Marshal(nip86.Request{Method: method, Params: append([]any{}, params...)})
	sum := sha256.Sum256(body)
	auth := s.event(t, 27235, "", nostr.Tags{{"u", r.httpURL()}, {"method", "POST"}, {"payload", hex.EncodeToString(sum[:])}}, 0)
	return postManagement(t, r, body, auth)
}

func postManagement(t *testing.T, r *testRelay, body []byte, auth *nostr.Event) nip86.Response {
	t.Helper()
	return postManagementWith(t, r, body, auth, nil)
}

func TestNIP86(t *testing.T) {
	admin, stranger := newSigner(t), newSigner(t)
	store := newTestStore(t)
	r := startRelay(t, Config{Name: "before", Admins: []string{admin.pk}}, store)

	c := dial(t, r.url, nil)
	victim := newSigner(t).event(t, 1, "spam", nil, 0)
	c.publish(victim)

	if resp := manage(t, r, stranger, "banevent", victim.ID, "no"); resp.Error == "" {
		t.Fatalf("non-admin banevent accepted: %+v", resp)
	}
	if n, _ := store.Count(context.Background(), nostr.Filter{IDs: []string{victim.ID}}); n != 1 {
		t.Fatalf("event gone after a refused ban")
	}

	// Malformed authorization is refused without reaching khatru.
	body := []byte(`{"method":"supportedmethods","params":[]}`)
	noU := admin.event(t, 27235, "", nostr.Tags{{"method", "POST"}}, 0)
	wrongKind := admin.event(t, 1, "", nostr.Tags{{"u", r.httpURL()}}, 0)
	for name, auth := range map[string]*nostr.Event{"no auth": nil, "no u tag": noU, "wrong kind": wrongKind} {
		if resp := postManagement(t, r, body, auth); resp.Error == "" {
			t.Fatalf("%s: call accepted: %+v", name, resp)
		}
	}

	resp := manage(t, r, admin, "supportedmethods")
	var methods []string
	for _, m := range resp.Result.([]any) {
		methods = append(methods, m.(string))
	}
	for _, m := range []string{"banpubkey", "listbannedpubkeys", "banevent", "listbannedevents", "changerelayname", "changerelaydescription", "blockip", "unblockip", "listblockedips"} {
		if !slices.Contains(methods, m) {
			t.Fatalf("supportedmethods %v lacks %s", methods, m)
		}
	}

	if resp := manage(t, r, admin, "banevent", victim.ID, "spam"); resp.Error != "" {
		t.Fatalf("admin banevent: %s", resp.Error)
	}
	if n, _ := store.Count(context.Background(), nostr.Filter{IDs: []string{victim.ID}}); n != 0 {
		t.Fatalf("banned event still stored")
	}
	if got := c.publish(victim); got.ok || got.msg != "blocked: deleted" {
		t.Fatalf("re-publishing a banned event = %+v, want blocked: deleted", got)
	}
	resp = manage(t, r, admin, "listbannedevents")
	if b, _ := json.Marshal(resp.Result); !strings.Contains(string(b), victim.ID) {
		t.Fatalf("listbannedevents %s lacks %s", b, victim.ID)
	}

	if resp := manage(t, r, admin, "changerelayname", "after"); resp.Error != "" {
		t.Fatal(resp.Error)
	}
	if resp := manage(t, r, admin, "changerelaydescription", "new words"); resp.Error != "" {
		t.Fatal(resp.Error)
	}
	if doc := fetchNIP11(t, r); doc["name"] != "after" || doc["description"] != "new words" {
		t.Fatalf("NIP-11 after rename: %v / %v", doc["name"], doc["description"])
	}

	if resp := manage(t, r, admin, "blockip", "127.0.0.1", "test"); resp.Error != "" {
		t.Fatal(resp.Error)
	}
	resp = manage(t, r, admin, "listblockedips")
	if b, _ := json.Marshal(resp.Result); !strings.Contains(string(b), "127.0.0.1") {
		t.Fatalf("listblockedips %s", b)
	}
	var de *dialError
	if _, err := tryDial(r.url, nil); !errors.As(err, &de) || de.status != http.StatusForbidden {
		t.Fatalf("dial from a blocked address: %v, want 403", err)
	}
	if resp := manage(t, r, admin, "unblockip", "127.0.0.1", "done"); resp.Error != "" {
		t.Fatal(resp.Error)
	}
	dial(t, r.url, nil)
}

func TestHealthReadyMetrics(t *testing.T) {
	r := startRelay(t, Config{}, newTestStore(t))
	c := dial(t, r.url, nil)
	author := newSigner(t)
	regret := author.event(t, 1, "counted", nil, 0)
	c.publish(regret)
	c.send([]any{"REQ", "q", nostr.Filter{Kinds: []int{1}}})
	c.collect("q")
	// One deletion by request and one by replacement, counted by reason.
	c.publish(author.event(t, 5, "", nostr.Tags{{"e", regret.ID}}, 0))
	c.publish(author.event(t, 0, `{"name":"a"}`, nil, nostr.Now()-10))
	c.publish(author.event(t, 0, `{"name":"b"}`, nil, 0))

	get := func(path string) (int, string) {
		resp, err := http.Get(r.httpURL() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz %d", code)
	}
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz %d", code)
	}
	code, body := get("/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics %d", code)
	}
	for _, want := range []string{
		`burrow_events_accepted_total{kind="1"} 1`,
		`burrow_connections_open 1`,
		`burrow_queries_total{outcome="ok",type="req"} 1`,
		`burrow_query_duration_seconds_count{type="req"} 1`,
		`burrow_outbound_queue_overflows_total 0`,
		`burrow_events_deleted_total{kind="1",reason="deletion_request"} 1`,
		`burrow_events_deleted_total{kind="0",reason="replaced"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics serves the global registry")
	}

	// /readyz follows the store.
	broken := startRelay(t, Config{}, &failingStore{Store: newTestStore(t), pingErr: errors.New("disk on fire")})
	resp, err := http.Get(broken.httpURL() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || strings.Contains(string(b), "fire") {
		t.Fatalf("/readyz with a failing store: %d %q", resp.StatusCode, b)
	}
}

func TestConnectionsPerIP(t *testing.T) {
	limits := testLimits()
	limits.ConnectionsPerIP = 2
	r := startRelay(t, Config{Limits: limits}, newTestStore(t))
	a := dial(t, r.url, nil)
	dial(t, r.url, nil)
	var de *dialError
	if _, err := tryDial(r.url, nil); !errors.As(err, &de) || de.status != http.StatusTooManyRequests {
		t.Fatalf("third connection: %v, want 429", err)
	}
	_ = a.conn.Close()
	eventually(t, "a slot to free up", func() bool {
		c, err := tryDial(r.url, nil)
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	})
}

// X-Forwarded-For counts only when the peer is a trusted proxy.
func TestForwardedForOnlyFromTrustedProxies(t *testing.T) {
	limits := testLimits()
	limits.ConnectionsPerIP = 1
	xff := func(ip string) http.Header { return http.Header{"X-Forwarded-For": {ip}} }

	trusting := startRelay(t, Config{Limits: limits, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, newTestStore(t))
	dial(t, trusting.url, xff("203.0.113.1"))
	dial(t, trusting.url, xff("203.0.113.2")) // another client behind the proxy
	var de *dialError
	if _, err := tryDial(trusting.url, xff("198.51.100.9, 203.0.113.1")); !errors.As(err, &de) || de.status != http.StatusTooManyRequests {
		t.Fatalf("same right-most client again: %v, want 429", err)
	}

	untrusting := startRelay(t, Config{Limits: limits}, newTestStore(t))
	dial(t, untrusting.url, xff("203.0.113.1"))
	if _, err := tryDial(untrusting.url, xff("203.0.113.2")); !errors.As(err, &de) || de.status != http.StatusTooManyRequests {
		t.Fatalf("forged X-Forwarded-For believed: %v, want 429", err)
	}
}

// Shutdown lets an EVENT already being stored finish and be answered.
func TestShutdownFinishesInFlightWrite(t *testing.T) {
	gate := &failingStore{Store: newTestStore(t), saveEntered: make(chan struct{}), release: make(chan struct{})}
	r := startRelay(t, Config{}, gate)
	c := dial(t, r.url, nil)
	ev := newSigner(t).event(t, 1, "last words", nil, 0)
	c.send([]any{"EVENT", ev})
	<-gate.saveEntered

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- r.srv.Shutdown(ctx)
	}()
	var de *dialError
	eventually(t, "new connections to be refused", func() bool {
		_, err := tryDial(r.url, nil)
		return errors.As(err, &de) && de.status == http.StatusServiceUnavailable
	})
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) while a write was in flight", err)
	default:
	}
	close(gate.release)
	if got := c.readOK(); !got.ok || got.id != ev.ID {
		t.Fatalf("in-flight EVENT answer %+v, want OK true", got)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c.conn.ReadMessage(); err == nil {
		t.Fatal("connection still open after Shutdown")
	}
	if n, _ := gate.Store.Count(context.Background(), nostr.Filter{IDs: []string{ev.ID}}); n != 1 {
		t.Fatal("in-flight event not stored")
	}
}
