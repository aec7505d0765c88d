package server

import "testing"

func TestFreedSignal(t *testing.T) {
	var f freedSignal
	a := f.wait()
	b := f.wait() // a second waiter shares the channel
	f.notify()
	for _, ch := range []<-chan struct{}{a, b} {
		select {
		case <-ch:
		default:
			t.Fatal("a waiter was not woken by notify")
		}
	}
	c := f.wait()
	select {
	case <-c:
		t.Fatal("a waiter after notify was woken by it")
	default:
	}
	f.notify()
	<-c
	// Nobody waits: notify costs nothing.
	if n := testing.AllocsPerRun(100, f.notify); n != 0 {
		t.Fatalf("notify with no waiter allocated %v times", n)
	}
}
