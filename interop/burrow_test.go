package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// TestEngineRefusals checks that the in-process engine answers bad
// requests with ok:false (a *CallError through Call) and that a refused
// request leaves its group where it was.
func TestEngineRefusals(t *testing.T) {
	ctx := context.Background()
	// A Welcome addressed to somebody else's KeyPackage.
	other, stranger := NewEngine(EngineConfig{}), NewEngine(EngineConfig{})
	var kp KeyPackageResult
	if err := stranger.Call(ctx, "create_key_package", CreateKeyPackageArgs{Identity: []byte("s"), Suite: Suite0001}, &kp); err != nil {
		t.Fatal(err)
	}
	if err := other.Call(ctx, "create_group", CreateGroupArgs{GroupID: []byte("g2"), Identity: []byte("o"), Suite: Suite0001}, nil); err != nil {
		t.Fatal(err)
	}
	var added CommitResult
	if err := other.Call(ctx, "add_member", AddMemberArgs{KeyPackage: kp.KeyPackageBare}, &added); err != nil {
		t.Fatalf("add a bare KeyPackage: %v", err)
	}

	cases := []struct {
		name      string
		withGroup bool
		op        string
		args      any
		wantInMsg string
	}{
		{"unknown op", true, "frobnicate", nil, "unknown op"},
		{"state without a group", false, "state", nil, "no group membership"},
		{"protect without a group", false, "protect", ProtectArgs{Plaintext: []byte("x")}, "no group membership"},
		{"unsupported suite", false, "create_key_package", CreateKeyPackageArgs{Identity: []byte("a"), Suite: 0x0004}, "suite 0x0004"},
		{"garbage message", true, "process", MessageArgs{Message: []byte{0, 1, 0, 1, 9}}, "truncated input"},
		{"garbage KeyPackage", true, "add_member", AddMemberArgs{KeyPackage: []byte{0, 1, 0, 5, 1}}, "framed KeyPackage"},
		{"remove the committer itself", true, "remove_member", RemoveMemberArgs{LeafIndex: 0}, "removes the committer"},
		{"remove a blank leaf", true, "remove_member", RemoveMemberArgs{LeafIndex: 7}, "blank leaf 7"},
		{"Welcome for another KeyPackage", false, "join", JoinArgs{Welcome: added.Welcome}, "none of this engine's KeyPackages"},
		{"join a commit", false, "join", JoinArgs{Welcome: added.Commit}, "not a Welcome"},
		{"merge without a held commit", true, "merge_pending", nil, "no held commit"},
		{"discard without a held commit", true, "discard_pending", nil, "no held commit"},
		{"external join while in a group", true, "external_join", ExternalJoinArgs{GroupInfo: added.Commit, Identity: []byte("x")}, "already holds a group"},
		{"external join from a commit", false, "external_join", ExternalJoinArgs{GroupInfo: added.Commit, Identity: []byte("x")}, "not a GroupInfo"},
		{"PSK without a secret", false, "add_external_psk", ExternalPSKArgs{PSKID: []byte("id")}, "psk_id and secret are required"},
		{"commit a garbage KeyPackage", true, "commit", CommitArgs{Add: []Hex{{0, 1, 0, 5, 1}}}, "framed KeyPackage"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := NewEngine(EngineConfig{})
			if tc.withGroup {
				if err := e.Call(ctx, "create_group", CreateGroupArgs{GroupID: []byte("g"), Identity: []byte("a"), Suite: Suite0001}, nil); err != nil {
					t.Fatal(err)
				}
			}
			err := e.Call(ctx, tc.op, tc.args, nil)
			var ce *CallError
			if !errors.As(err, &ce) {
				t.Fatalf("%s: got %v, want a *CallError", tc.op, err)
			}
			if ce.Kind != KindBurrow || ce.Op != tc.op || !strings.Contains(ce.Message, tc.wantInMsg) {
				t.Fatalf("%s: refusal %+v, want one from %s mentioning %q", tc.op, ce, KindBurrow, tc.wantInMsg)
			}
			if tc.withGroup {
				var st StateResult
				if err := e.Call(ctx, "state", nil, &st); err != nil {
					t.Fatalf("state after a refusal: %v", err)
				}
				if st.Epoch != 0 || len(st.Members) != 1 {
					t.Fatalf("after a refused %s: epoch %d with %d members, want epoch 0 with 1", tc.op, st.Epoch, len(st.Members))
				}
			}
		})
	}
}

// TestEngineServe runs the process loop over a fixed input: blank lines
// are ignored, a bad line is answered with ok:false, and nothing after
// quit is read.
func TestEngineServe(t *testing.T) {
	in := strings.Join([]string{
		`{"id":1,"op":"hello"}`,
		``,
		`not json`,
		`{"id":3,"op":"create_group","group_id":"0a0b","identity":"01","suite":1}`,
		`{"id":4,"op":"quit"}`,
		`{"id":5,"op":"hello"}`,
	}, "\n")
	var out bytes.Buffer
	if err := NewEngine(EngineConfig{}).Serve(context.Background(), strings.NewReader(in), &out); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	want := []struct {
		id uint64
		ok bool
	}{{1, true}, {0, false}, {3, true}, {4, true}}
	if len(lines) != len(want) {
		t.Fatalf("%d response lines, want %d:\n%s", len(lines), len(want), out.String())
	}
	for i, w := range want {
		var head struct {
			ID uint64 `json:"id"`
			OK bool   `json:"ok"`
		}
		if err := json.Unmarshal([]byte(lines[i]), &head); err != nil {
			t.Fatalf("line %d %q: %v", i, lines[i], err)
		}
		if head.ID != w.id || head.OK != w.ok {
			t.Fatalf("line %d %q: id %d ok %v, want id %d ok %v", i, lines[i], head.ID, head.OK, w.id, w.ok)
		}
	}
}

// TestEngineCallContext: a call with an ended context is not run.
func TestEngineCallContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	e := NewEngine(EngineConfig{})
	if err := e.Call(ctx, "create_group", CreateGroupArgs{GroupID: []byte("g"), Identity: []byte("a")}, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if e.Group() != nil {
		t.Fatal("a canceled create_group made a group")
	}
}
