package mls_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/mls/codec"
	"github.com/burrow-relay/burrow/mls/internal/vectortest"
)

type messagesCase struct {
	MLSWelcome               vectortest.Hex `json:"mls_welcome"`
	MLSGroupInfo             vectortest.Hex `json:"mls_group_info"`
	MLSKeyPackage            vectortest.Hex `json:"mls_key_package"`
	RatchetTree              vectortest.Hex `json:"ratchet_tree"`
	GroupSecrets             vectortest.Hex `json:"group_secrets"`
	AddProposal              vectortest.Hex `json:"add_proposal"`
	UpdateProposal           vectortest.Hex `json:"update_proposal"`
	RemoveProposal           vectortest.Hex `json:"remove_proposal"`
	PreSharedKeyProposal     vectortest.Hex `json:"pre_shared_key_proposal"`
	ReInitProposal           vectortest.Hex `json:"re_init_proposal"`
	ExternalInitProposal     vectortest.Hex `json:"external_init_proposal"`
	GroupContextExtsProposal vectortest.Hex `json:"group_context_extensions_proposal"`
	Commit                   vectortest.Hex `json:"commit"`
	PublicMessageApplication vectortest.Hex `json:"public_message_application"`
	PublicMessageProposal    vectortest.Hex `json:"public_message_proposal"`
	PublicMessageCommit      vectortest.Hex `json:"public_message_commit"`
	PrivateMessage           vectortest.Hex `json:"private_message"`
}

// messageField is one structure of a messages.json case: how to decode it
// and what to check on the decoded value.
type messageField struct {
	name  string
	data  []byte
	value func() interface {
		mls.Encoder
		mls.Decoder
	}
	check func(t *testing.T, v any)
}

func wantWireFormat(wf mls.WireFormat, ct mls.ContentType) func(t *testing.T, v any) {
	return func(t *testing.T, v any) {
		t.Helper()
		m := v.(*mls.MLSMessage)
		if m.Version != mls.MLS10 || m.WireFormat != wf {
			t.Errorf("version %d wire format %d, want 1 and %d", m.Version, m.WireFormat, wf)
		}
		if wf == mls.WireFormatPublicMessage && m.PublicMessage.Content.ContentType != ct {
			t.Errorf("content type %d, want %d", m.PublicMessage.Content.ContentType, ct)
		}
	}
}

func (c *messagesCase) fields() []messageField {
	msg := func() interface {
		mls.Encoder
		mls.Decoder
	} {
		return new(mls.MLSMessage)
	}
	return []messageField{
		{"mls_welcome", c.MLSWelcome, msg, wantWireFormat(mls.WireFormatWelcome, 0)},
		{"mls_group_info", c.MLSGroupInfo, msg, wantWireFormat(mls.WireFormatGroupInfo, 0)},
		{"mls_key_package", c.MLSKeyPackage, msg, wantWireFormat(mls.WireFormatKeyPackage, 0)},
		{"ratchet_tree", c.RatchetTree, func() interface {
			mls.Encoder
			mls.Decoder
		} {
			return new(mls.RatchetTree)
		}, nil},
		{"group_secrets", c.GroupSecrets, wrap[mls.GroupSecrets](), nil},
		{"add_proposal", c.AddProposal, wrap[mls.Add](), nil},
		{"update_proposal", c.UpdateProposal, wrap[mls.Update](), nil},
		{"remove_proposal", c.RemoveProposal, wrap[mls.Remove](), nil},
		{"pre_shared_key_proposal", c.PreSharedKeyProposal, wrap[mls.PreSharedKey](), nil},
		{"re_init_proposal", c.ReInitProposal, wrap[mls.ReInit](), nil},
		{"external_init_proposal", c.ExternalInitProposal, wrap[mls.ExternalInit](), nil},
		{"group_context_extensions_proposal", c.GroupContextExtsProposal, wrap[mls.GroupContextExtensions](), nil},
		{"commit", c.Commit, wrap[mls.Commit](), nil},
		{"public_message_application", c.PublicMessageApplication, msg, wantWireFormat(mls.WireFormatPublicMessage, mls.ContentApplication)},
		{"public_message_proposal", c.PublicMessageProposal, msg, wantWireFormat(mls.WireFormatPublicMessage, mls.ContentProposal)},
		{"public_message_commit", c.PublicMessageCommit, msg, wantWireFormat(mls.WireFormatPublicMessage, mls.ContentCommit)},
		{"private_message", c.PrivateMessage, msg, wantWireFormat(mls.WireFormatPrivateMessage, 0)},
	}
}

// wrap returns a constructor for *T as an encoder-decoder.
func wrap[T any, PT interface {
	*T
	mls.Encoder
	mls.Decoder
}]() func() interface {
	mls.Encoder
	mls.Decoder
} {
	return func() interface {
		mls.Encoder
		mls.Decoder
	} {
		return PT(new(T))
	}
}

func TestMessagesVectors(t *testing.T) {
	var cases []messagesCase
	vectortest.Load(t, "messages.json", &cases)
	count := vectortest.NewCounter("messages.json")
	for i := range cases {
		fields := cases[i].fields()
		for _, f := range fields {
			if len(f.data) == 0 {
				t.Errorf("case %d: %s is empty", i, f.name)
				continue
			}
			v := f.value()
			if err := mls.Unmarshal(f.data, v); err != nil {
				t.Errorf("case %d: %s: %v", i, f.name, err)
				continue
			}
			got, err := mls.Marshal(v)
			if err != nil {
				t.Errorf("case %d: %s: re-encode: %v", i, f.name, err)
				continue
			}
			if !bytes.Equal(got, f.data) {
				t.Errorf("case %d: %s: re-encoding differs\n got %x\nwant %x", i, f.name, got, f.data)
			}
			if f.check != nil {
				f.check(t, v)
			}
			checkSignedBytes(t, v, f.data)
		}
		count.Add("all")
	}
	count.Check(t, len(cases))
}

// checkSignedBytes checks that what a decoded value's signature is checked
// over is the received encoding itself: with no Raw bytes kept, the TBS
// comes from re-encoding the fields, which strict decoding makes equal to
// the input.
func checkSignedBytes(t *testing.T, v any, data []byte) {
	t.Helper()
	signedPrefix := func(what string, tbs, received, sig []byte) {
		t.Helper()
		rest := received[min(len(tbs), len(received)):]
		if !bytes.HasPrefix(received, tbs) || len(rest) != codec.VarintLen(uint64(len(sig)))+len(sig) || !bytes.HasSuffix(rest, sig) {
			t.Errorf("%s: the signed bytes are not the received ones", what)
		}
	}
	switch x := v.(type) {
	case *mls.MLSMessage:
		body := data[4:]
		switch {
		case x.KeyPackage != nil:
			signedPrefix("KeyPackage", x.KeyPackage.TBS(), body, x.KeyPackage.Signature)
		case x.GroupInfo != nil:
			signedPrefix("GroupInfo", x.GroupInfo.TBS(), body, x.GroupInfo.Signature)
		case x.PublicMessage != nil:
			fc := &x.PublicMessage.Content
			tbs, err := mls.FramedContentTBS(mls.WireFormatPublicMessage, fc, &mls.GroupContext{Version: mls.MLS10})
			if err != nil || !bytes.HasPrefix(body, tbs[4:len(tbs)-len(mustMarshal(t, &mls.GroupContext{Version: mls.MLS10}))]) {
				t.Errorf("FramedContentTBS does not carry the received content (%v)", err)
			}
		}
	case *mls.Add:
		signedPrefix("KeyPackage", x.KeyPackage.TBS(), data, x.KeyPackage.Signature)
	case *mls.Update:
		signedPrefix("LeafNode", x.LeafNode.TBS(nil, 0)[:len(x.LeafNode.TBS(nil, 0))-5], data, x.LeafNode.Signature)
	}
}

// TestMessagesTruncated cuts every structure of the first messages.json case
// at every length: each prefix must fail to decode with a codec error and
// never panic.
func TestMessagesTruncated(t *testing.T) {
	var cases []messagesCase
	vectortest.Load(t, "messages.json", &cases)
	for _, f := range cases[0].fields() {
		for n := 0; n < len(f.data); n++ {
			err := mls.Unmarshal(f.data[:n], f.value())
			if err == nil {
				t.Fatalf("%s: prefix of %d/%d bytes decoded", f.name, n, len(f.data))
			}
			var ce *codec.Error
			if !errors.As(err, &ce) && !errors.Is(err, codec.ErrTrailingBytes) {
				t.Fatalf("%s: prefix %d: error %v is not a codec error", f.name, n, err)
			}
		}
		extra := append(append([]byte{}, f.data...), 0)
		if err := mls.Unmarshal(extra, f.value()); !errors.Is(err, codec.ErrTrailingBytes) {
			t.Fatalf("%s: trailing byte: got %v", f.name, err)
		}
	}
}
