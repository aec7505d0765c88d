package main

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// scrubBacklogger is a store whose KeyPackage scrub can fall behind
// (postgres.Store).
type scrubBacklogger interface {
	ScrubBacklog(ctx context.Context) (debts int64, oldest time.Duration, err error)
}

// scrubCollector exports the scrub backlog, read from the database at each
// scrape (bounded by scrubScrapeTimeout); a failed read exports nothing,
// so an alert on absent series notices.
type scrubCollector struct {
	store          scrubBacklogger
	debts, waiting *prometheus.Desc
}

const scrubScrapeTimeout = 2 * time.Second

func newScrubCollector(store scrubBacklogger) *scrubCollector {
	return &scrubCollector{
		store: store,
		debts: prometheus.NewDesc("burrow_keypackage_scrub_debts",
			"PostgreSQL: KeyPackage deletions whose content partition is not yet rewritten (their bytes are still in the database files).", nil, nil),
		waiting: prometheus.NewDesc("burrow_keypackage_scrub_oldest_seconds",
			"PostgreSQL: how long the oldest unpaid KeyPackage scrub debt has waited (0 with none); compare with --keypackage-scrub-within.", nil, nil),
	}
}

func (c *scrubCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.debts
	ch <- c.waiting
}

func (c *scrubCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrubScrapeTimeout)
	defer cancel()
	debts, oldest, err := c.store.ScrubBacklog(ctx)
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.debts, prometheus.GaugeValue, float64(debts))
	ch <- prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, oldest.Seconds())
}
