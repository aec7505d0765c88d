package server

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip42"
)

// authEvent builds a NIP-42 AUTH event.
func authEvent(t *testing.T, s signer, challenge, relay string, kind int, created nostr.Timestamp) *nostr.Event {
	t.Helper()
	return s.event(t, kind, "", nostr.Tags{{"relay", relay}, {"challenge", challenge}}, created)
}

func TestAuthAndProtectedEvents(t *testing.T) {
	r := startRelay(t, Config{}, newTestStore(t))
	c, err := tryDial(r.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	cl := &wsClient{t: t, conn: c}
	defer c.Close()
	first := cl.read()
	if label(first) != "AUTH" {
		t.Fatalf("first message %s, want AUTH challenge", joinRaw(first))
	}
	challenge := str(first[1])
	author, other := newSigner(t), newSigner(t)
	protected := author.event(t, 1, "only mine", nostr.Tags{{"-"}}, 0)

	if got := cl.publish(protected); got.ok || !strings.HasPrefix(got.msg, "auth-required:") {
		t.Fatalf("unauthenticated protected publish = %+v, want auth-required:", got)
	}

	bad := []struct {
		name string
		ev   *nostr.Event
	}{
		{"wrong challenge", authEvent(t, author, "nope", r.url, 22242, 0)},
		{"wrong relay", authEvent(t, author, challenge, "ws://elsewhere.example", 22242, 0)},
		{"wrong kind", authEvent(t, author, challenge, r.url, 1, 0)},
		{"stale", authEvent(t, author, challenge, r.url, 22242, nostr.Now()-3600)},
	}
	for _, tt := range bad {
		cl.send([]any{"AUTH", tt.ev})
		if got := cl.readOK(); got.ok || !strings.HasPrefix(got.msg, "invalid:") || got.id != tt.ev.ID {
			t.Fatalf("%s: AUTH answer %+v, want OK false invalid:", tt.name, got)
		}
	}
	forged := authEvent(t, author, challenge, r.url, 22242, 0)
	forged.Sig = strings.Repeat("0", 128)
	cl.send([]any{"AUTH", forged})
	if got := cl.readOK(); got.ok {
		t.Fatalf("forged AUTH accepted")
	}

	// Authenticated as someone else: restricted.
	cl.send([]any{"AUTH", authEvent(t, other, challenge, r.url, 22242, 0)})
	if got := cl.readOK(); !got.ok {
		t.Fatalf("AUTH as other: %+v", got)
	}
	if got := cl.publish(protected); got.ok || !strings.HasPrefix(got.msg, "restricted:") {
		t.Fatalf("protected publish by other = %+v, want restricted:", got)
	}
	// Authenticated as the author (the relay tag may be the http twin).
	cl.send([]any{"AUTH", authEvent(t, author, challenge, strings.Replace(r.url, "ws://", "http://", 1)+"/", 22242, 0)})
	if got := cl.readOK(); !got.ok {
		t.Fatalf("AUTH as author: %+v", got)
	}
	if got := cl.publish(protected); !got.ok {
		t.Fatalf("protected publish by author = %+v, want OK", got)
	}
	// An AUTH event is never accepted as an EVENT.
	if got := cl.publish(authEvent(t, author, challenge, r.url, 22242, 0)); got.ok || !strings.HasPrefix(got.msg, "invalid:") {
		t.Fatalf("AUTH as EVENT = %+v, want invalid:", got)
	}
}

// go-nostr's client connection and envelopes: subscribe, AUTH, publish a
// protected event, receive it live. (go-nostr's Relay type is not used: its
// close path has data races of its own that -race reports.)
func TestGoNostrClientAuth(t *testing.T) {
	r := startRelay(t, Config{}, newTestStore(t))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := nostr.NewConnection(ctx, r.url, nil, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close()
	parser := nostr.NewMessageParser()
	next := func() nostr.Envelope {
		t.Helper()
		var buf bytes.Buffer
		if err := conn.ReadMessage(ctx, &buf); err != nil {
			t.Fatalf("read: %v", err)
		}
		env, err := parser.ParseMessage(buf.String())
		if err != nil {
			t.Fatalf("parse %s: %v", buf.String(), err)
		}
		return env
	}
	write := func(env nostr.Envelope) {
		t.Helper()
		b, err := env.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if err := conn.WriteMessage(ctx, b); err != nil {
			t.Fatalf("write: %v", err)
		}
	}

	challenge, ok := next().(*nostr.AuthEnvelope)
	if !ok || challenge.Challenge == nil {
		t.Fatal("first message is not an AUTH challenge")
	}
	s := newSigner(t)
	write(&nostr.ReqEnvelope{SubscriptionID: "mine", Filters: nostr.Filters{{Authors: []string{s.pk}}}})
	if eose, ok := next().(*nostr.EOSEEnvelope); !ok || string(*eose) != "mine" {
		t.Fatalf("want EOSE for mine")
	}
	ev := s.event(t, 1, "protected", nostr.Tags{{"-"}}, 0)
	write(&nostr.EventEnvelope{Event: *ev})
	if ok, _ := next().(*nostr.OKEnvelope); ok == nil || ok.OK || !strings.HasPrefix(ok.Reason, "auth-required:") {
		t.Fatalf("publish before AUTH: %+v, want auth-required:", ok)
	}
	ae := nip42.CreateUnsignedAuthEvent(*challenge.Challenge, s.pk, r.url)
	if err := ae.Sign(s.sk); err != nil {
		t.Fatal(err)
	}
	write(&nostr.AuthEnvelope{Event: ae})
	if ok, _ := next().(*nostr.OKEnvelope); ok == nil || !ok.OK {
		t.Fatalf("AUTH answer %+v, want OK true", ok)
	}
	write(&nostr.EventEnvelope{Event: *ev})
	// The OK and the live event may come in either order.
	var gotOK, gotLive bool
	for !gotOK || !gotLive {
		switch env := next().(type) {
		case *nostr.OKEnvelope:
			if !env.OK {
				t.Fatalf("publish after AUTH: %+v", env)
			}
			gotOK = true
		case *nostr.EventEnvelope:
			if env.Event.ID != ev.ID || env.SubscriptionID == nil || *env.SubscriptionID != "mine" {
				t.Fatalf("unexpected live event %+v", env)
			}
			gotLive = true
		default:
			t.Fatalf("unexpected %s", env)
		}
	}
}
