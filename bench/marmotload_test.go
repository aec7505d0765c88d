package bench

import (
	"strings"
	"testing"
	"time"
)

// TestCheckDeliveries proves the load's judge catches every way a subscriber's stream can be
// wrong: it is what turns a fan-out bug into a failed run.
func TestCheckDeliveries(t *testing.T) {
	// Events 0-3 are group 0's 445s with seq 1-4, event 4 a gift wrap, event 5 a group 1 445
	// with seq 1, event 6 a 445 whose OK carried no seq.
	seq := []int64{1, 2, 3, 4, 0, 1, 0}
	group := []int32{0, 0, 0, 0, -1, 1, 0}
	expect := [][]int32{{0, 1, 2, 3, 4}, {5}}
	tests := []struct {
		name string
		got  [][]int32
		want deliveryCheck // counters only
		says []string      // substrings of the samples
	}{
		{"exactly once, in order", [][]int32{{0, 4, 1, 2, 3}, {5}},
			deliveryCheck{Expected: 6, Delivered: 6, SeqJudged: 5}, nil},
		{"missing", [][]int32{{0, 1, 3, 4}, {5}},
			deliveryCheck{Expected: 6, Delivered: 5, SeqJudged: 4, Missing: 1}, []string{"event 2 never arrived"}},
		{"duplicate", [][]int32{{0, 1, 1, 2, 3, 4}, {5}},
			deliveryCheck{Expected: 6, Delivered: 7, SeqJudged: 5, Duplicates: 1}, []string{"event 1 arrived 2 times"}},
		{"out of order", [][]int32{{0, 2, 1, 3, 4}, {5}},
			deliveryCheck{Expected: 6, Delivered: 6, SeqJudged: 5, OutOfOrder: 1}, []string{"seq 2 after seq 3"}},
		{"someone else's", [][]int32{{0, 1, 2, 3, 4, 5}, {5}},
			deliveryCheck{Expected: 6, Delivered: 7, SeqJudged: 5, Unexpected: 1}, []string{"subscriber 0: event 5 not meant"}},
		{"someone else's twice", [][]int32{{0, 1, 2, 3, 4}, {5, 4, 4}},
			deliveryCheck{Expected: 6, Delivered: 8, SeqJudged: 5, Unexpected: 1, Duplicates: 1}, []string{"subscriber 1: event 4 not meant"}},
		{"nothing at all", [][]int32{nil, nil},
			deliveryCheck{Expected: 6, Missing: 6}, []string{"subscriber 1: event 5 never arrived"}},
		{"one group's seqs do not bind another's", [][]int32{{0, 1, 2, 3, 4}, {5}},
			deliveryCheck{Expected: 6, Delivered: 6, SeqJudged: 5}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := checkDeliveries(expect, tt.got, seq, group, 10)
			samples := d.Samples
			d.Samples = nil
			if d.Expected != tt.want.Expected || d.Delivered != tt.want.Delivered || d.Missing != tt.want.Missing ||
				d.Duplicates != tt.want.Duplicates || d.Unexpected != tt.want.Unexpected ||
				d.OutOfOrder != tt.want.OutOfOrder || d.SeqJudged != tt.want.SeqJudged {
				t.Fatalf("got %+v, want %+v", d, tt.want)
			}
			if d.ok() != (len(tt.says) == 0) {
				t.Errorf("ok() = %t with samples %q", d.ok(), samples)
			}
			for _, s := range tt.says {
				found := false
				for _, got := range samples {
					found = found || strings.Contains(got, s)
				}
				if !found {
					t.Errorf("no sample says %q; samples %q", s, samples)
				}
			}
		})
	}

	// Unknown seqs (a relay that puts none in its OKs) are delivered but not judged for order.
	unseq := []int64{0, 0, 0, 0, 0, 0, 0}
	d := checkDeliveries(expect, [][]int32{{3, 2, 1, 0, 4}, {5}}, unseq, group, 10)
	if !d.ok() || d.SeqJudged != 0 {
		t.Errorf("without seqs: %+v, want ok and nothing judged", d)
	}
	// A group 0 event without seq between seq'd ones does not reset the order.
	d = checkDeliveries([][]int32{{0, 6, 2}}, [][]int32{{2, 6, 0}}, seq, group, 10)
	if d.OutOfOrder != 1 {
		t.Errorf("seq 1 after seq 3 around an unsequenced event: %+v, want one out of order", d)
	}
}

// TestMarmotSchedule checks the offered load: each class at its rate over the duration, in due
// order, 445s spread evenly over the groups, wraps and KeyPackages over subscribers and authors.
func TestMarmotSchedule(t *testing.T) {
	cfg, err := MarmotConfig{URL: "ws://127.0.0.1:1", Duration: 2 * time.Second, Subscribers: 60, Groups: 4, AuthorPool: 20}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	events := marmotSchedule(cfg)
	var counts [3]int
	perGroup := make([]int, cfg.Groups)
	for i, e := range events {
		counts[e.class]++
		if i > 0 && e.due < events[i-1].due {
			t.Fatalf("event %d due %s before event %d's %s", i, e.due, i-1, events[i-1].due)
		}
		if e.due >= cfg.Duration {
			t.Fatalf("event %d due %s, after the run", i, e.due)
		}
		switch e.class {
		case classGroup:
			perGroup[e.group]++
		case classWrap:
			if e.target < 0 || int(e.target) >= cfg.Subscribers {
				t.Fatalf("wrap %d to subscriber %d", i, e.target)
			}
		case classKP:
			if e.target < 0 || int(e.target) >= cfg.AuthorPool {
				t.Fatalf("KeyPackage %d by author %d", i, e.target)
			}
		}
	}
	if counts != [3]int{3000, 40, 20} {
		t.Errorf("counts %v, want [3000 40 20] for 2 s at 1500, 20 and 10 per second", counts)
	}
	for g, n := range perGroup {
		if n != 750 {
			t.Errorf("group %d has %d events, want 750", g, n)
		}
	}
	if a := sourceAddr(cfg.Subscribers-1, cfg.PerAddress).String(); a != "127.0.0.3" {
		t.Errorf("subscriber 59 dials from %s, want 127.0.0.3 at 50 per address", a)
	}
	if _, err := (MarmotConfig{URL: "ws://127.0.0.1:1", Subscribers: 2000, PerAddress: 5}).withDefaults(); err == nil {
		t.Error("400 source addresses accepted; only 127.0.0.2-127.0.0.251 exist for it")
	}
}
