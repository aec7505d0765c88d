package server

// freedSignal tells goroutines waiting for room (in a queue, a budget) that
// some was given back. Its owner's mutex guards it. A waiter takes the
// channel with wait, under the mutex, and blocks on it after unlocking;
// notify closes it, waking every waiter, and starts a new one only when the
// old one was taken, so giving room back costs no allocation while nobody
// waits (the usual case, once per event).
type freedSignal struct {
	ch    chan struct{}
	taken bool
}

func (f *freedSignal) wait() <-chan struct{} {
	if f.ch == nil {
		f.ch = make(chan struct{})
	}
	f.taken = true
	return f.ch
}

func (f *freedSignal) notify() {
	if f.taken {
		close(f.ch)
		f.ch = make(chan struct{})
		f.taken = false
	}
}
