package interop

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"testing"
	"time"
)

// TestCallProtocol drives fake peers (shell one-liners) through each way a
// call can end.
func TestCallProtocol(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Fatalf("sh is needed for the fake peers: %v", err)
	}
	cases := []struct {
		name      string
		script    string
		timeout   time.Duration
		wantErr   error // matched with errors.Is
		wantCall  string
		wantValue string
	}{
		{name: "ok", script: `read l; echo '{"id":1,"ok":true,"value":"ab01"}'; read l`, wantValue: "ab01"},
		{name: "refused", script: `read l; echo '{"id":1,"ok":false,"error":"nope"}'; read l`, wantCall: "nope"},
		{name: "wrong id", script: `read l; echo '{"id":9,"ok":true}'; read l`, wantErr: ErrDesync},
		{name: "not json", script: `read l; echo 'hello'; read l`, wantErr: ErrDesync},
		{name: "exits", script: `exit 0`, wantErr: ErrPeerGone},
		{name: "hangs", script: `read l; exec sleep 30`, timeout: 200 * time.Millisecond, wantErr: ErrDesync},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := startProcess("fake", exec.Command("sh", "-c", tc.script), "", io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			ctx := context.Background()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			var out ValueResult
			err = p.Call(ctx, "epoch_authenticator", nil, &out)
			var ce *CallError
			switch {
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				// A broken peer stays broken.
				if err2 := p.Call(context.Background(), "state", nil, nil); err2 == nil {
					t.Fatalf("second call on a broken peer succeeded")
				}
			case tc.wantCall != "":
				if !errors.As(err, &ce) || ce.Message != tc.wantCall || ce.Op != "epoch_authenticator" {
					t.Fatalf("err %v, want CallError %q", err, tc.wantCall)
				}
			default:
				if err != nil || hex.EncodeToString(out.Value) != tc.wantValue {
					t.Fatalf("value %x, err %v; want %s", out.Value, err, tc.wantValue)
				}
			}
			if err := p.Close(); err != nil && tc.wantErr == nil {
				t.Fatalf("close: %v", err)
			}
			if err := p.Call(context.Background(), "state", nil, nil); !errors.Is(err, ErrPeerGone) {
				t.Fatalf("call after close: %v, want ErrPeerGone", err)
			}
		})
	}
}

func TestRequestLine(t *testing.T) {
	cases := []struct {
		name    string
		args    any
		want    map[string]any
		wantErr bool
	}{
		{name: "nil args", args: nil, want: map[string]any{"id": 3.0, "op": "x"}},
		{name: "struct", args: RemoveMemberArgs{LeafIndex: 2}, want: map[string]any{"id": 3.0, "op": "x", "leaf_index": 2.0}},
		{name: "hex", args: ProtectArgs{Plaintext: []byte{0xde, 0xad}}, want: map[string]any{"id": 3.0, "op": "x", "plaintext": "dead"}},
		{name: "args cannot override id", args: map[string]any{"id": 99, "op": "y"}, want: map[string]any{"id": 3.0, "op": "x"}},
		{name: "not an object", args: []int{1}, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			line, err := requestLine(3, "x", tc.args)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("got %s, want an error", line)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if line[len(line)-1] != '\n' {
				t.Fatalf("line %q does not end in a newline", line)
			}
			var got map[string]any
			if err := json.Unmarshal(line, &got); err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Fatalf("%s = %v, want %v", k, got[k], v)
				}
			}
		})
	}
}

func TestJSONScalars(t *testing.T) {
	cases := []struct {
		in      string
		want    uint64
		wantErr bool
	}{
		{`42`, 42, false},
		{`"9223372036854775807"`, 9223372036854775807, false},
		{`"18446744073709551615"`, 18446744073709551615, false},
		{`-1`, 0, true},
		{`"x"`, 0, true},
	}
	for _, tc := range cases {
		var u Uint64
		err := json.Unmarshal([]byte(tc.in), &u)
		if (err != nil) != tc.wantErr || (err == nil && uint64(u) != tc.want) {
			t.Errorf("Uint64 %s: got %d, %v", tc.in, u, err)
		}
	}
	var h Hex
	if err := json.Unmarshal([]byte(`"zz"`), &h); err == nil {
		t.Errorf("Hex accepted zz")
	}
	if err := json.Unmarshal([]byte(`"00FF"`), &h); err != nil || hex.EncodeToString(h) != "00ff" {
		t.Errorf("Hex 00FF: %x, %v", h, err)
	}
}

func TestStartUnknownKind(t *testing.T) {
	if _, err := Start(context.Background(), "openmls"); !errors.Is(err, ErrUnknownKind) {
		t.Fatalf("err %v, want ErrUnknownKind", err)
	}
}
