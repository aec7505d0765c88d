package bench

import "time"

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

// CPUOverhead is the share of CPU per accepted event a feature adds, from the same alternate runs
// as Overhead: least subject CPU per event / least control CPU per event - 1. The least run of each
// side is the one other work on the machine disturbed least. It is 0 when CPU was not measured.
func CPUOverhead(subject, control []Result) float64 {
	least := func(rs []Result) float64 {
		l := 0.0
		for _, r := range rs {
			if r.Accepted == 0 || r.ProcessCPU <= 0 {
				continue
			}
			if per := float64(r.ProcessCPU) / float64(r.Accepted); l == 0 || per < l {
				l = per
			}
		}
		return l
	}
	s, c := least(subject), least(control)
	if s == 0 || c == 0 {
		return 0
	}
	return s/c - 1
}

// CPUPerEvent is r's process CPU per accepted event, 0 when not measured.
func (r Result) CPUPerEvent() time.Duration {
	if r.Accepted == 0 {
		return 0
	}
	return r.ProcessCPU / time.Duration(r.Accepted)
}
