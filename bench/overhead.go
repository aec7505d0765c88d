package bench

// Overhead is the share of throughput a feature costs, measured as alternate runs of the same load
// with the feature on (subject) and off (control): 1 - best subject ev/s / best control ev/s.
// Taking the best run of each side discounts a run slowed by other work on the machine, which
// would otherwise be charged to whichever side it happened to hit. It is 0 when there are no runs
// to compare and negative when the subject was faster.
func Overhead(subject, control []Result) float64 {
	best := func(rs []Result) float64 {
		b := 0.0
		for _, r := range rs {
			b = max(b, r.EventsPerSec)
		}
		return b
	}
	s, c := best(subject), best(control)
	if s == 0 || c == 0 {
		return 0
	}
	return 1 - s/c
}
