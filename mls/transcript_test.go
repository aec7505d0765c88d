package mls_test

import (
	"bytes"
	"testing"

	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/mls/internal/vectortest"
	"github.com/burrow-relay/burrow/mls/keyschedule"
)

// TestTranscriptHashesVectors decodes each AuthenticatedContent (it must
// be a Commit and re-encode exactly), builds ConfirmedTranscriptHashInput
// from the decoded content, and checks both transcript hashes and the
// confirmation tag.
func TestTranscriptHashesVectors(t *testing.T) {
	var cases []struct {
		CipherSuite                  vectortest.Uint `json:"cipher_suite"`
		ConfirmationKey              vectortest.Hex  `json:"confirmation_key"`
		AuthenticatedContent         vectortest.Hex  `json:"authenticated_content"`
		InterimTranscriptHashBefore  vectortest.Hex  `json:"interim_transcript_hash_before"`
		ConfirmedTranscriptHashAfter vectortest.Hex  `json:"confirmed_transcript_hash_after"`
		InterimTranscriptHashAfter   vectortest.Hex  `json:"interim_transcript_hash_after"`
	}
	vectortest.Load(t, "transcript-hashes.json", &cases)
	count := vectortest.NewCounter("transcript-hashes.json")
	for i, tc := range cases {
		cs := uint64(tc.CipherSuite)
		suite, ok := countedSuite(t, count, cs)
		if !ok {
			continue
		}
		var ac mls.AuthenticatedContent
		if err := mls.Unmarshal(tc.AuthenticatedContent, &ac); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if ac.Content.ContentType != mls.ContentCommit || ac.Content.Commit == nil {
			t.Fatalf("case %d: content type %d, want commit", i, ac.Content.ContentType)
		}
		if got := mustMarshal(t, &ac); !bytes.Equal(got, tc.AuthenticatedContent) {
			t.Errorf("case %d: AuthenticatedContent does not re-encode", i)
		}
		input, err := mls.ConfirmedTranscriptHashInput(ac.WireFormat, &ac.Content, ac.Auth.Signature)
		if err != nil {
			t.Fatal(err)
		}
		confirmed := keyschedule.ConfirmedTranscriptHash(suite, tc.InterimTranscriptHashBefore, input)
		if !bytes.Equal(confirmed, tc.ConfirmedTranscriptHashAfter) {
			t.Errorf("case %d: confirmed transcript hash differs", i)
		}
		if !suite.VerifyMAC(tc.ConfirmationKey, tc.ConfirmedTranscriptHashAfter, ac.Auth.ConfirmationTag) {
			t.Errorf("case %d: confirmation tag does not verify", i)
		}
		interim, err := keyschedule.InterimTranscriptHash(suite, tc.ConfirmedTranscriptHashAfter, ac.Auth.ConfirmationTag)
		if err != nil || !bytes.Equal(interim, tc.InterimTranscriptHashAfter) {
			t.Errorf("case %d: interim transcript hash differs (%v)", i, err)
		}
	}
	count.Check(t, len(cases))
}
