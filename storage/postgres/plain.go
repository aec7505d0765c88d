package postgres

import (
	"fmt"
	"slices"

	"github.com/burrow-relay/burrow/storage"
	"github.com/jackc/pgx/v5"
)

const savePlainSQL = `SELECT o_status, o_seq FROM burrow_save_plain($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`

// plain reports whether burrow_save_plain may save the event (migration
// 10): it replaces, deletes and vanishes nothing, and is neither a
// KeyPackage (whose rules are burrow_save's) nor a gift wrap (which its
// recipients' deletions and requests to vanish also reach).
func (a *saveArgs) plain() bool {
	switch a.kind {
	case 5, 62, 443, 1059, 30443:
		return false
	}
	return !a.kp && a.slotD == nil
}

// plainGroup is the plain saves of one group commit as burrow_save_plain's
// arrays.
type plainGroup struct {
	reqs                                  []*saveReq
	ids, idHexes, pubkeys, tags, contents [][]byte
	sigs, hs                              [][]byte
	createdAts                            []int64
	expiresAts                            []*int64
	kinds, tagEvents                      []int32
	tagNames                              []string
	tagValues                             [][]byte
	lockKeys                              []int32
}

// take moves the plain saves of reqs into g and returns the others, in
// their order. A second save of one id stays with the others: it runs
// after burrow_save_plain, so it finds the first stored (or refused).
func (g *plainGroup) take(reqs []*saveReq) (rest []*saveReq) {
	rest = reqs[:0:0]
	seen := make(map[string]bool, len(reqs))
	for _, r := range reqs {
		a := r.args
		if r.claim != nil || !a.plain() || seen[r.id] {
			rest = append(rest, r)
			continue
		}
		seen[r.id] = true
		g.reqs = append(g.reqs, r)
		g.ids = append(g.ids, a.id)
		g.idHexes = append(g.idHexes, a.idHex)
		g.pubkeys = append(g.pubkeys, a.pubkey)
		g.createdAts = append(g.createdAts, a.createdAt)
		g.kinds = append(g.kinds, a.kind)
		g.tags = append(g.tags, a.tags)
		g.contents = append(g.contents, a.content)
		g.sigs = append(g.sigs, a.sig)
		g.expiresAts = append(g.expiresAts, a.expiresAt)
		g.hs = append(g.hs, a.h)
		for i, name := range a.tagNames {
			g.tagEvents = append(g.tagEvents, int32(len(g.reqs)))
			g.tagNames = append(g.tagNames, name)
			g.tagValues = append(g.tagValues, a.tagValues[i])
		}
		// A plain save's locks are all shared (newSaveArgs), so one sorted
		// pass over the group's keys takes them in a deadlock-free order.
		g.lockKeys = append(g.lockKeys, a.lockKeys...)
	}
	slices.Sort(g.lockKeys)
	g.lockKeys = slices.Compact(g.lockKeys)
	return rest
}

func (g *plainGroup) values() []any {
	return []any{g.ids, g.idHexes, g.pubkeys, g.createdAts, g.kinds, g.tags, g.contents, g.sigs,
		g.expiresAts, g.hs, g.tagEvents, g.tagNames, g.tagValues, g.lockKeys}
}

// scan reads burrow_save_plain's row into each request's result.
func (g *plainGroup) scan(row pgx.Row) error {
	var (
		status []int32
		seqs   []int64
	)
	if err := row.Scan(&status, &seqs); err != nil {
		return err
	}
	if len(status) != len(g.reqs) || len(seqs) != len(g.reqs) {
		return fmt.Errorf("burrow_save_plain answered %d statuses and %d seqs for %d events", len(status), len(seqs), len(g.reqs))
	}
	for i, r := range g.reqs {
		r.res = saveResp{status: int(status[i]), res: storage.Result{Seq: seqs[i]}}
	}
	return nil
}
