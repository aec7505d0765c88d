package keyschedule_test

import (
	"bytes"
	"testing"

	"github.com/burrow-relay/burrow/mls/keyschedule"
)

// BenchmarkDerive measures one epoch transition of the key schedule (joiner,
// welcome, epoch and the nine derived secrets), which every Commit costs.
func BenchmarkDerive(b *testing.B) {
	s := testSuite(b)
	initSecret := bytes.Repeat([]byte{1}, 32)
	commitSecret := bytes.Repeat([]byte{2}, 32)
	gc := bytes.Repeat([]byte{3}, 120)
	b.ReportAllocs()
	for b.Loop() {
		e, err := keyschedule.Derive(s, initSecret, commitSecret, nil, gc)
		if err != nil {
			b.Fatal(err)
		}
		e.Drop()
	}
}

func BenchmarkExternalPub(b *testing.B) {
	s := testSuite(b)
	e, err := keyschedule.Derive(s, bytes.Repeat([]byte{1}, 32), nil, nil, []byte("gc"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.ExternalPub(); err != nil {
			b.Fatal(err)
		}
	}
}
