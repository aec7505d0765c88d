package server

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/burrow-relay/burrow/storage"
	"github.com/nbd-wtf/go-nostr"
)

// Storage errors map to OK answers with errors.Is, and internals never
// reach the client.
func TestStoreErrorAnswers(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		seq     int64
		kind    int
		ok      bool
		want    string // exact message, or prefix when prefixOnly
		prefix  bool
		private string // must not appear in the answer
	}{
		{"duplicate", fmt.Errorf("save: %w", storage.ErrDuplicate), 0, 1, true, "duplicate:", true, ""},
		{"duplicate group event", fmt.Errorf("save: %w", storage.ErrDuplicate), 7, 445, true, "seq:7", false, ""},
		{"deleted", fmt.Errorf("save: %w", storage.ErrDeleted), 0, 1, false, "blocked: deleted", false, ""},
		{"replaced", fmt.Errorf("save: %w", storage.ErrReplaced), 0, 30443, false, "blocked:", true, ""},
		{"expired", fmt.Errorf("save: %w", storage.ErrExpired), 0, 1, false, "invalid:", true, ""},
		{"not author", fmt.Errorf("save: %w", storage.ErrNotAuthor), 0, 5, false, "blocked:", true, ""},
		{"backend failure", errors.New("sqlite: disk I/O error at /var/secret/relay.db"), 0, 1, false, "error:", true, "/var/secret"},
		{"slot loser", fmt.Errorf("save: %w", &storage.SlotTakenError{Holder: strings.Repeat("ab", 32)}), 0, 445, false, "blocked: slot taken by " + strings.Repeat("ab", 32), false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startRelay(t, Config{}, &failingStore{Store: newTestStore(t), saveErr: tt.err, saveSeq: tt.seq})
			c := dial(t, r.url, nil)
			tags, content := nostr.Tags{}, "x"
			switch tt.kind {
			case 445:
				tags, content = nostr.Tags{{"h", strings.Repeat("ef", 32)}}, groupContent("x")
			case 30443:
				tags = nostr.Tags{{"d", "slot"}}
			}
			got := c.publish(newSigner(t).event(t, tt.kind, content, tags, 0))
			if got.ok != tt.ok {
				t.Fatalf("ok = %v, want %v (%q)", got.ok, tt.ok, got.msg)
			}
			if tt.prefix && !strings.HasPrefix(got.msg, tt.want) || !tt.prefix && got.msg != tt.want {
				t.Fatalf("message %q, want %q", got.msg, tt.want)
			}
			if tt.private != "" && strings.Contains(got.msg, tt.private) {
				t.Fatalf("message %q leaks internals", got.msg)
			}
		})
	}
}
