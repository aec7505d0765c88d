package storetest

import (
	"bytes"
	"sync"
	"testing"

	"github.com/burrow-relay/burrow/storage"
)

func secretCases() []testCase {
	return []testCase{
		{"a secret is drawn once and read the same by every handle", func(t *testing.T, open Opener) {
			handles := []storage.Store{open(t), open(t), open(t)}
			for _, h := range handles {
				if _, ok := h.(storage.Secrets); !ok {
					t.Fatal("the backend keeps no secrets (storage.Secrets)")
				}
			}
			got := make([][]byte, 12)
			var wg sync.WaitGroup
			for i := range got {
				wg.Go(func() {
					v, err := handles[i%len(handles)].(storage.Secrets).Secret(testContext(t), "bus", 32)
					if err != nil {
						t.Errorf("Secret: %v", err)
					}
					got[i] = v
				})
			}
			wg.Wait()
			if len(got[0]) != 32 || bytes.Equal(got[0], make([]byte, 32)) {
				t.Fatalf("secret %x: want 32 random bytes", got[0])
			}
			for i, v := range got {
				if !bytes.Equal(v, got[0]) {
					t.Fatalf("call %d got another value", i)
				}
			}
			other, err := handles[0].(storage.Secrets).Secret(testContext(t), "other", 32)
			if err != nil || bytes.Equal(other, got[0]) {
				t.Fatalf("another name: %x, %v; want a value of its own", other, err)
			}
		}},
	}
}
