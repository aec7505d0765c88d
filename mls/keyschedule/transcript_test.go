package keyschedule_test

import (
	"bytes"
	"crypto/sha256"
	"testing"

	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/internal/vectortest"
	"github.com/burrow-relay/burrow/mls/keyschedule"
)

type transcriptVector struct {
	CipherSuite                  uint16 `json:"cipher_suite"`
	ConfirmationKey              hexb   `json:"confirmation_key"`
	AuthenticatedContent         hexb   `json:"authenticated_content"`
	InterimTranscriptHashBefore  hexb   `json:"interim_transcript_hash_before"`
	ConfirmedTranscriptHashAfter hexb   `json:"confirmed_transcript_hash_after"`
	InterimTranscriptHashAfter   hexb   `json:"interim_transcript_hash_after"`
}

// TestTranscriptHashHelpers checks the section 8.2 hash helpers against
// transcript-hashes.json. It does not decode AuthenticatedContent: for a
// Commit the confirmation_tag is the last field, an opaque<V> of Nh bytes,
// so ConfirmedTranscriptHashInput is everything before those 1+Nh bytes.
// The structural conformance test of that file (decoding the content and
// checking it is a Commit) belongs to package mls, which owns the wire
// structures; this test is therefore not counted in counts_crypto.json.
func TestTranscriptHashHelpers(t *testing.T) {
	var cases []transcriptVector
	vectortest.Load(t, "transcript-hashes.json", &cases)
	checked := 0
	for i, tc := range cases {
		s, err := cipher.New(cipher.CipherSuite(tc.CipherSuite))
		if err != nil {
			continue
		}
		ac := tc.AuthenticatedContent
		n := len(ac) - 1 - s.Nh()
		if n < 0 || ac[n] != byte(s.Nh()) {
			t.Fatalf("case %d: authenticated_content does not end in an Nh-byte tag", i)
		}
		confirmedInput, tag := ac[:n], ac[n+1:]
		confirmed := keyschedule.ConfirmedTranscriptHash(s, tc.InterimTranscriptHashBefore, confirmedInput)
		if !bytes.Equal(confirmed, tc.ConfirmedTranscriptHashAfter) {
			t.Errorf("case %d: confirmed_transcript_hash_after mismatch", i)
		}
		if !s.VerifyMAC(tc.ConfirmationKey, confirmed, tag) {
			t.Errorf("case %d: confirmation tag does not verify", i)
		}
		interim, err := keyschedule.InterimTranscriptHash(s, confirmed, tag)
		if err != nil || !bytes.Equal(interim, tc.InterimTranscriptHashAfter) {
			t.Errorf("case %d: interim_transcript_hash_after mismatch (%v)", i, err)
		}
		checked++
	}
	if checked != 3 {
		t.Errorf("checked %d supported-suite cases, want 3", checked)
	}
}

func TestInterimTranscriptHashEncoding(t *testing.T) {
	s := testSuite(t)
	got, err := keyschedule.InterimTranscriptHash(s, []byte("c"), []byte("tag"))
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256([]byte("c\x03tag"))
	if !bytes.Equal(got, want[:]) {
		t.Errorf("InterimTranscriptHash = %x, want %x", got, want)
	}
}
