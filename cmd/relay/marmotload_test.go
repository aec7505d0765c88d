package main

import (
	"context"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/bench"
)

// TestMarmotLoadAgainstBurrow runs a small busy-Marmot-relay load (issue 17
// item 4) against Burrow in process: subscribers from three loopback
// addresses, gift wraps read after AUTH, real KeyPackages. Every event must
// be accepted and every delivery must arrive exactly once and in seq order;
// latency is the benchmark's business, not this test's.
func TestMarmotLoadAgainstBurrow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	url, stop, err := burrowTarget("burrow/sqlite", "", "", nil).Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := stop(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	res, err := bench.RunMarmot(ctx, bench.MarmotConfig{URL: url, Subscribers: 120, PerAddress: 50, Groups: 4,
		AuthorPool: 20, GroupRate: 100, WrapRate: 20, KeyPackageRate: 10, Duration: time.Second, Settle: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Addresses != 3 {
		t.Errorf("%d source addresses, want 3", res.Addresses)
	}
	if res.Accepted != [3]int{100, 20, 10} || res.Refused != 0 || res.Unanswered != 0 {
		t.Fatalf("accepted %v, refused %d (%q), unanswered %d; want all of 100 445s, 20 wraps, 10 KeyPackages",
			res.Accepted, res.Refused, res.RefusedSamples, res.Unanswered)
	}
	d := res.Deliveries
	// 445s: 30 subscribers per group; wraps: one each; KeyPackages: 120*10/20 = 60 followers each.
	if want := 100*30 + 20 + 10*60; d.Expected != want {
		t.Errorf("%d deliveries expected, want %d", d.Expected, want)
	}
	if !res.Passed() || d.Delivered != d.Expected || d.SeqJudged != 100*30 {
		t.Errorf("deliveries %+v, dropped %d (%q); want every one exactly once, each 445's order judged", d, res.Dropped, res.DroppedSamples)
	}
}
