package server

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/nbd-wtf/go-nostr/nip86"
)

// Dependency is a service the relay can work without for a while (see
// Config.SoftDependencies).
type Dependency struct {
	// Name names it in /readyz ("redis").
	Name string
	// Check reports whether it answers; it must honour ctx.
	Check func(ctx context.Context) error
}

// dependencyTimeout bounds each soft dependency's check in /readyz, so
// one that hangs still leaves an answer within the readiness timeout.
const dependencyTimeout = 2 * time.Second

// Reasons of burrow_connections_refused_total.
const (
	refusedPerAddress = "per_address"
	refusedCapacity   = "capacity"
)

// isManagementCall reports whether r is a NIP-86 call, as khatru routes
// them: any method, by its content type.
func isManagementCall(r *http.Request) bool {
	return r.Header.Get("Content-Type") == "application/nostr+json+rpc"
}

// ManagementHandler serves what Config.PrivateManagement keeps off the
// public handler, on the listener the operator chose for it: GET /metrics
// and NIP-86 calls, plus /healthz and /readyz for the monitoring that
// scrapes it. Anything else is 404. It serves them whether or not
// PrivateManagement is set.
func (s *Server) ManagementHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metrics.handler())
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isManagementCall(r) {
			s.serveManagement(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// refuseManagement answers a NIP-86 call on the public handler when the
// management API is served elsewhere: 404, with a NIP-86 error saying so.
func refuseManagement(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/nostr+json+rpc")
	w.WriteHeader(http.StatusNotFound)
	_ = json.NewEncoder(w).Encode(nip86.Response{
		Error: "the management API is not served on this address (the operator serves it on a private listener)",
	})
}

// failingDependencies checks every soft dependency, at once, and names
// those that do not answer.
func (s *Server) failingDependencies(ctx context.Context) []string {
	deps := s.cfg.SoftDependencies
	if len(deps) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, dependencyTimeout)
	defer cancel()
	errs := make([]error, len(deps))
	done := make(chan int, len(deps))
	for i, d := range deps {
		go func() {
			errs[i] = d.Check(ctx)
			done <- i
		}()
	}
	for range deps {
		<-done
	}
	var down []string
	for i, err := range errs {
		if err != nil {
			s.log.Debug("readiness: dependency unreachable, serving degraded", "dependency", deps[i].Name, "err", err)
			down = append(down, deps[i].Name)
		}
	}
	return down
}

// takeConnection holds one of Config.MaxConnections, reporting false when
// none is left; giveConnection gives it back.
func (s *Server) takeConnection() bool {
	if s.cfg.MaxConnections <= 0 {
		return true
	}
	if s.upgrades.Add(1) > int64(s.cfg.MaxConnections) {
		s.upgrades.Add(-1)
		return false
	}
	return true
}

func (s *Server) giveConnection() {
	if s.cfg.MaxConnections > 0 {
		s.upgrades.Add(-1)
	}
}
