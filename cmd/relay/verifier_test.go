package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip86"
)

// The one signature verifier (issue 17 item 1, DESIGN.md "Signature
// verification"): every check goes through go-nostr's Event.CheckSignature,
// which follows the libsecp256k1 build tag, and signatureVerifier names
// what that tag selected. CI runs these tests in both builds.

// TestVerifierNameMatchesGoNostr asks go-nostr's CheckSignature which
// implementation it is (the two word their refusal of a public key that is
// not on the curve differently), so the name relay version, relay bench and
// the startup log print cannot drift from the code that runs, for example
// if go-nostr renamed its build tag.
func TestVerifierNameMatchesGoNostr(t *testing.T) {
	ev := nostr.Event{PubKey: strings.Repeat("f", 64), Sig: strings.Repeat("1", 128), Tags: nostr.Tags{}}
	ok, err := ev.CheckSignature()
	if ok || err == nil {
		t.Fatalf("CheckSignature of an off-curve key = %v, %v; want an error", ok, err)
	}
	libsecp := strings.Contains(err.Error(), "xonly")
	if libsecp != libsecp256k1Build || libsecp != strings.Contains(signatureVerifier, "libsecp256k1") {
		t.Fatalf("go-nostr's CheckSignature says %q (libsecp256k1: %t), but this binary names its verifier %q (libsecp256k1Build %t)",
			err, libsecp, signatureVerifier, libsecp256k1Build)
	}
}

// verifierAPIs are the identifiers a non-test file may use from a
// secp256k1 or BIP-340 package: key generation and encoding, never
// signature parsing or checking, which only go-nostr's CheckSignature does.
var verifierAPIs = regexp.MustCompile(`secp256k1|schnorr|btcec`)

var majorVersion = regexp.MustCompile(`^v[0-9]+$`)

var keyHandling = map[string]bool{
	"NewPrivateKey": true, "PrivKeyFromBytes": true, "PrivKeyFromScalar": true, "PrivateKey": true,
	"PublicKey": true, "ModNScalar": true, "SerializePubKey": true, "ParsePubKey": true,
}

// verifierExceptions are the files allowed more, with the reason.
var verifierExceptions = map[string]map[string]string{
	// Marmot's account identity proof (MIP-00 component 0x8009) is a
	// BIP-340 signature over a kind 450 template that is never an event on
	// the wire. Group members check it (relay selftest and harness, as
	// clients); the relay never does: its KeyPackage check is
	// marmot.ParseKeyPackageEvent, which does not call it.
	"marmot/identity.go": {"ParseSignature": "identity proofs, checked by clients only"},
}

// TestOneSignatureVerifier reads every non-test Go file of the module (not
// the baseline's or interop/mlsgo's, which are modules of their own) and
// fails on a second way to verify a signature: cgo (a C verifier of our
// own), a Nostr library other than go-nostr and khatru, or a secp256k1 /
// BIP-340 package used for more than keys (ParseSignature, Verify, ...).
func TestOneSignatureVerifier(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found: %v", err)
	}
	fset := token.NewFileSet()
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || name == "node_modules" || name == "testdata") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil && path != root {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files++
		crypto := map[string]string{} // local name -> import path
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			switch {
			case p == "C":
				t.Errorf("%s: uses cgo; a C signature verifier must come through go-nostr's libsecp256k1 tag", rel)
			case strings.Contains(strings.ToLower(p), "nostr") &&
				!strings.HasPrefix(p, "github.com/nbd-wtf/go-nostr") && !strings.HasPrefix(p, "github.com/fiatjaf/khatru"):
				t.Errorf("%s: imports %s, a Nostr library other than go-nostr (its verifier would not follow the build tag)", rel, p)
			case verifierAPIs.MatchString(p):
				name := p[strings.LastIndex(p, "/")+1:]
				if majorVersion.MatchString(name) {
					name = strings.Split(p, "/")[len(strings.Split(p, "/"))-2]
				}
				if imp.Name != nil {
					name = imp.Name.Name
				}
				crypto[name] = p
			}
		}
		if len(crypto) == 0 {
			return nil
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			x, ok := sel.X.(*ast.Ident)
			if !ok || crypto[x.Name] == "" || keyHandling[sel.Sel.Name] {
				return true
			}
			if _, excused := verifierExceptions[rel][sel.Sel.Name]; excused {
				return true
			}
			t.Errorf("%s:%d: uses %s.%s; signatures are checked only by go-nostr's Event.CheckSignature (it follows the libsecp256k1 build tag)",
				rel, fset.Position(sel.Pos()).Line, crypto[x.Name], sel.Sel.Name)
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 100 {
		t.Fatalf("read only %d files under %s; the walk is broken", files, root)
	}
}

// TestEveryPathRefusesBadSignatures sends a good signature and broken ones
// through each place the relay checks one (EVENT, AUTH, the Commit inside a
// commit-slot claim, NIP-86 authorization): the broken ones are refused
// and the relay goes on answering. go-nostr's libsecp256k1 CheckSignature
// decodes the key and signature into fixed arrays and panics on longer
// ones, so in that build this also proves every path checks their length
// first.
func TestEveryPathRefusesBadSignatures(t *testing.T) {
	admin := newAuthor(t)
	c, err := parseServeConfig([]string{"--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--admin", admin.pk}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ws := startInProcess(t, c)
	httpURL := "http" + strings.TrimPrefix(ws, "ws")

	breaks := []struct {
		name  string
		apply func(ev *nostr.Event)
	}{
		{"bad signature", func(ev *nostr.Event) { ev.Sig = flipHex(ev.Sig) }},
		{"signature a byte too long", func(ev *nostr.Event) { ev.Sig += "00" }},
		{"signature a byte short", func(ev *nostr.Event) { ev.Sig = ev.Sig[:126] }},
		{"pubkey a byte too long", func(ev *nostr.Event) { ev.PubKey += "00" }},
		{"pubkey a byte short", func(ev *nostr.Event) { ev.PubKey = ev.PubKey[:62] }},
		{"another key's pubkey", func(ev *nostr.Event) { ev.PubKey = newAuthor(t).pk }},
	}
	// resign keeps the id matching the broken event, so only the
	// signature check can refuse it.
	resign := func(ev nostr.Event) nostr.Event {
		ev.ID = ev.GetID()
		return ev
	}

	t.Run("EVENT", func(t *testing.T) {
		cl := mustDial(t, ws)
		a := newAuthor(t)
		for _, b := range breaks {
			ev := a.sign(t, 1, "hello "+b.name, nil, 0)
			b.apply(&ev)
			ev = resign(ev)
			if ok, msg, err := cl.publish(ev, testTimeout); err != nil || ok {
				t.Errorf("%s: ok=%v %q %v, want a refusal", b.name, ok, msg, err)
			}
		}
		if ok, msg, err := cl.publish(a.sign(t, 1, "good", nil, 0), testTimeout); err != nil || !ok {
			t.Fatalf("good event: ok=%v %q %v", ok, msg, err)
		}
	})

	t.Run("AUTH", func(t *testing.T) {
		conn, _, err := websocket.DefaultDialer.Dial(ws, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var challenge []string
		if err := conn.ReadJSON(&challenge); err != nil || len(challenge) != 2 || challenge[0] != "AUTH" {
			t.Fatalf("challenge %v, %v", challenge, err)
		}
		a := newAuthor(t)
		auth := func() nostr.Event {
			return a.sign(t, 22242, "", nostr.Tags{{"relay", ws}, {"challenge", challenge[1]}}, 0)
		}
		answer := func(ev nostr.Event) (bool, string) {
			t.Helper()
			if err := conn.WriteJSON([]any{"AUTH", ev}); err != nil {
				t.Fatal(err)
			}
			var ok []any
			if err := conn.ReadJSON(&ok); err != nil || len(ok) < 4 || ok[0] != "OK" {
				t.Fatalf("AUTH answer %v, %v", ok, err)
			}
			return ok[2] == true, ok[3].(string)
		}
		for _, b := range breaks {
			ev := auth()
			b.apply(&ev)
			if ok, msg := answer(resign(ev)); ok {
				t.Errorf("%s: AUTH accepted (%q)", b.name, msg)
			}
		}
		if ok, msg := answer(auth()); !ok {
			t.Fatalf("good AUTH refused: %q", msg)
		}
	})

	t.Run("claimed Commit", func(t *testing.T) {
		cl := mustDial(t, ws)
		h := newGroupID()
		slotKey := newAuthor(t)
		for _, b := range breaks {
			commit := groupEvent(t, h)
			b.apply(&commit)
			if ok, msg, err := cl.publish(claim(t, slotKey, resign(commit), ""), testTimeout); err != nil || ok {
				t.Errorf("%s: ok=%v %q %v, want a refusal", b.name, ok, msg, err)
			} else if !strings.Contains(msg, "Commit") {
				t.Errorf("%s: refused with %q, want a reason naming the claimed Commit", b.name, msg)
			}
		}
		if ok, msg, err := cl.publish(claim(t, slotKey, groupEvent(t, h), ""), testTimeout); err != nil || !ok {
			t.Fatalf("good claim: ok=%v %q %v", ok, msg, err)
		}
	})

	t.Run("NIP-86 authorization", func(t *testing.T) {
		call := func(ev nostr.Event, body []byte) (nip86.Response, error) {
			aj, _ := json.Marshal(ev)
			req, _ := http.NewRequest(http.MethodPost, httpURL, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/nostr+json+rpc")
			req.Header.Set("Authorization", "Nostr "+base64.StdEncoding.EncodeToString(aj))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return nip86.Response{}, err
			}
			defer resp.Body.Close()
			var out nip86.Response
			return out, json.NewDecoder(resp.Body).Decode(&out)
		}
		body, _ := json.Marshal(nip86.Request{Method: "supportedmethods", Params: []any{}})
		sum := sha256.Sum256(body)
		auth := func() nostr.Event {
			return admin.sign(t, 27235, "", nostr.Tags{{"u", httpURL}, {"method", "POST"}, {"payload", hex.EncodeToString(sum[:])}}, 0)
		}
		for _, b := range breaks {
			ev := auth()
			b.apply(&ev)
			out, err := call(resign(ev), body)
			if err != nil || out.Error == "" {
				t.Errorf("%s: %+v, %v; want an error answer", b.name, out, err)
			}
		}
		if out, err := call(auth(), body); err != nil || out.Error != "" {
			t.Fatalf("good call: %+v, %v", out, err)
		}
	})

	// The relay still serves after all of it.
	cl := mustDial(t, ws)
	if ok, msg, err := cl.publish(newAuthor(t).sign(t, 1, "still here", nil, 0), testTimeout); err != nil || !ok {
		t.Fatalf("after the broken signatures: ok=%v %q %v", ok, msg, err)
	}
}

// flipHex changes the first hex digit of s.
func flipHex(s string) string {
	c := byte('0')
	if s[0] == '0' {
		c = '1'
	}
	return string(c) + s[1:]
}

// TestProductionBuildIsOneCommand: README's production build, the
// Dockerfile's and .ci/run's use the same tags and static linking, so the
// binary CI tests is the one the image ships.
func TestProductionBuildIsOneCommand(t *testing.T) {
	for _, f := range []string{"../../README.md", "../../Dockerfile", "../../.ci/run"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		if !strings.Contains(s, "libsecp256k1,netgo,osusergo") || !strings.Contains(s, "-linkmode external -extldflags -static") {
			t.Errorf("%s does not build with -tags libsecp256k1,netgo,osusergo and -ldflags '-linkmode external -extldflags -static'", f)
		}
	}
}

// TestStartupLogNamesTheVerifier: the "relay listening" line says which
// verifier this binary checks signatures with.
func TestStartupLogNamesTheVerifier(t *testing.T) {
	c, err := parseServeConfig([]string{"--listen", "127.0.0.1:0", "--data-dir", t.TempDir()}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	r, err := startRelay(context.Background(), c, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		var rec struct{ Msg, Verifier string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "relay listening" {
			if rec.Verifier != signatureVerifier {
				t.Fatalf("start-up line names verifier %q, want %q", rec.Verifier, signatureVerifier)
			}
			return
		}
	}
	t.Fatalf("no relay listening line in:\n%s", logs.String())
}
