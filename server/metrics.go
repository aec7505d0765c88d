package server

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/burrow-relay/burrow/storage"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the relay's Prometheus series. Label values are bounded: kinds
// outside a fixed list are "other", reasons are NIP-01 prefixes.
type metrics struct {
	reg           *prometheus.Registry
	eventsOK      *prometheus.CounterVec
	eventsRefused *prometheus.CounterVec
	queries       *prometheus.CounterVec
	queryLatency  *prometheus.HistogramVec
	openConns     prometheus.Gauge
	negSessions   prometheus.Gauge
	refusedConns  *prometheus.CounterVec
	overflows     prometheus.Counter
	deleted       *prometheus.CounterVec
	deletedDrops  prometheus.Counter
	rateLimited   *prometheus.CounterVec
	okByKind      sync.Map // kind of a listed kind → its eventsOK counter
}

func newMetrics(reg *prometheus.Registry) (*metrics, error) {
	m := &metrics{
		reg: reg,
		eventsOK: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burrow_events_accepted_total",
			Help: "Events accepted (stored or relayed), by kind.",
		}, []string{"kind"}),
		eventsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burrow_events_rejected_total",
			Help: "Events refused, by kind and NIP-01 reason prefix.",
		}, []string{"kind", "reason"}),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burrow_queries_total",
			Help: "Stored-event queries (REQ and COUNT), by type and outcome.",
		}, []string{"type", "outcome"}),
		queryLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "burrow_query_duration_seconds",
			Help:    "Time to send a REQ's stored events, answer a COUNT, or read the keys of a NIP-77 NEG-OPEN.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9),
		}, []string{"type"}),
		openConns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "burrow_connections_open",
			Help: "Open websocket connections.",
		}),
		negSessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "burrow_negentropy_sessions",
			Help: "Open NIP-77 reconciliations.",
		}),
		refusedConns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burrow_connections_refused_total",
			Help: "Websocket connections refused, by reason: per_address (--max-connections-per-ip) or capacity (--max-connections).",
		}, []string{"reason"}),
		overflows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "burrow_outbound_queue_overflows_total",
			Help: "Connections closed because their outbound queue overflowed.",
		}),
		deletedDrops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "burrow_deleted_deliveries_dropped_total",
			Help: "Copies of events dropped on their way to a subscriber because the event was deleted meanwhile.",
		}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burrow_messages_rate_limited_total",
			Help: "Client messages refused by the per-connection or per-address token buckets, by message type.",
		}, []string{"type"}),
		deleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burrow_events_deleted_total",
			Help: "Events removed from storage, by kind and reason (deletion_request, replaced, expired, admin, twin, evicted, vanish, banned).",
		}, []string{"kind", "reason"}),
	}
	for _, c := range []prometheus.Collector{m.eventsOK, m.eventsRefused, m.queries, m.queryLatency,
		m.openConns, m.negSessions, m.refusedConns, m.overflows, m.deleted, m.deletedDrops, m.rateLimited} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// kindLabel keeps the kind label bounded: the kinds this relay is about get
// their own value, everything else is "other".
func kindLabel(kind int) string {
	switch kind {
	case 0, 1, 3, 5, 7, 62, 443, 444, 445, 1059, 10002, 10050, 10051, 20445, 22242, 30443:
		return strconv.Itoa(kind)
	case -1:
		return "unknown" // the event did not parse
	}
	if kind >= 20000 && kind < 30000 {
		return "ephemeral"
	}
	return "other"
}

// typeLabel keeps a client message type label bounded.
func typeLabel(label string) string {
	switch label {
	case "EVENT", "REQ", "COUNT", "CLOSE", "AUTH", "NEG-OPEN", "NEG-MSG", "NEG-CLOSE":
		return label
	}
	return "other"
}

// reasonLabel is the NIP-01 prefix of a refusal, or "other".
func reasonLabel(msg string) string {
	prefix, _, _ := strings.Cut(msg, ":")
	switch prefix {
	case "invalid", "blocked", "rate-limited", "duplicate", "auth-required", "restricted", "error", "pow", "mute":
		return prefix
	}
	return "other"
}

// accepted counts an accepted event. The counters of the listed kinds are
// kept once looked up (a bounded set), so the usual event costs no label
// formatting and hashing.
func (m *metrics) accepted(kind int) {
	if c, ok := m.okByKind.Load(kind); ok {
		c.(prometheus.Counter).Inc()
		return
	}
	label := kindLabel(kind)
	c := m.eventsOK.WithLabelValues(label)
	if label != "other" && label != "ephemeral" {
		m.okByKind.Store(kind, c)
	}
	c.Inc()
}

func (m *metrics) rejected(kind int, msg string) {
	m.eventsRefused.WithLabelValues(kindLabel(kind), reasonLabel(msg)).Inc()
}

// removed counts events that left storage; reasons come from the storage
// package's fixed set, so the label stays bounded.
func (m *metrics) removed(ds []storage.Deletion) {
	for _, d := range ds {
		m.deleted.WithLabelValues(kindLabel(d.Kind), string(d.Reason)).Inc()
	}
}

func (m *metrics) observeQuery(typ string, start time.Time, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.queries.WithLabelValues(typ, outcome).Inc()
	m.queryLatency.WithLabelValues(typ).Observe(time.Since(start).Seconds())
}

// CheckpointMetrics registers the series for the embedded store's WAL
// checkpoints after KeyPackage deletions (the scrub that takes deleted bytes
// out of the files) and returns the callback the store reports to
// (sqlite.Config.OnCheckpoint). Attempts above one mean readers held the WAL.
func CheckpointMetrics(reg prometheus.Registerer) (func(attempts int, err error), error) {
	rounds := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "burrow_wal_checkpoints_total",
		Help: "WAL checkpoints (TRUNCATE) run after KeyPackage deletions, by outcome.",
	}, []string{"outcome"})
	attempts := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "burrow_wal_checkpoint_attempts",
		Help:    "Tries one WAL checkpoint took; more than one means readers held the WAL.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128},
	})
	for _, c := range []prometheus.Collector{rounds, attempts} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering checkpoint metrics: %w", err)
		}
	}
	return func(n int, err error) {
		outcome := "ok"
		if err != nil {
			outcome = "error"
		}
		rounds.WithLabelValues(outcome).Inc()
		attempts.Observe(float64(n))
	}, nil
}

// CommitMetrics registers the series for the store's group commits and
// returns the callback the store reports to (sqlite.Config.OnCommit,
// postgres.Config.OnCommit). A commit's duration is what every write in it
// waited for storage, fsync included, so it is where a slow disk shows
// first; its size shows how many writes shared one flush.
func CommitMetrics(reg prometheus.Registerer) (func(writes int, took time.Duration), error) {
	seconds := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "burrow_store_commit_seconds",
		Help:    "How long each group commit of writes took in the store, from its first statement to its durable commit.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 15), // 100 µs to 1.6 s
	})
	writes := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "burrow_store_commit_writes",
		Help:    "Writes committed together in one group commit: event saves and slot claims (on SQLite, every write).",
		Buckets: prometheus.ExponentialBuckets(1, 2, 9), // 1 to 256, the default group cap
	})
	for _, c := range []prometheus.Collector{seconds, writes} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering commit metrics: %w", err)
		}
	}
	return func(n int, took time.Duration) {
		seconds.Observe(took.Seconds())
		writes.Observe(float64(n))
	}, nil
}
