package interop

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/mls/cipher"
)

// perfEnv turns TestMLSPerfAgainstPeers on; it is a benchmark that starts
// subprocesses and builds large groups, so it never runs by default.
const perfEnv = "BURROW_MLS_PERF"

// perfConfig is what one run of the comparison measures.
type perfConfig struct {
	// sizes are the group sizes N: members the group has before the peer
	// joins.
	sizes []int
	// tsmlsMax caps N for ts-mls, whose join grows about N².
	tsmlsMax int
	// reps is how many times each operation is measured; the median is
	// reported.
	reps int
	// worst is the size at which the worst cases are measured too
	// (a PrivateMessage commit with an Add and a Remove whose committer's
	// direct path meets the receiver's only at the root; join CPU time;
	// memory per member); it must be one of sizes.
	worst int
}

func perfConfigFromEnv(t *testing.T) perfConfig {
	t.Helper()
	c := perfConfig{sizes: []int{2, 10, 100, 1000}, tsmlsMax: 100, reps: 11, worst: 1000}
	if s := os.Getenv("BURROW_MLS_PERF_SIZES"); s != "" {
		c.sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 2 {
				t.Fatalf("BURROW_MLS_PERF_SIZES: %q is not a size of at least 2", f)
			}
			c.sizes = append(c.sizes, n)
		}
	}
	if s := os.Getenv("BURROW_MLS_PERF_WORST"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 2 {
			t.Fatalf("BURROW_MLS_PERF_WORST: %q is not a size of at least 2", s)
		}
		c.worst = n
	}
	for name, dst := range map[string]*int{"BURROW_MLS_PERF_TSMLS_MAX": &c.tsmlsMax, "BURROW_MLS_PERF_REPS": &c.reps} {
		if s := os.Getenv(name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				t.Fatalf("%s: %q is not a positive number", name, s)
			}
			*dst = n
		}
	}
	return c
}

// perfRow is one operation at one size against one peer: the peer's and
// our engine's samples, measured in the same group in the same run.
type perfRow struct {
	op   string
	n    int
	kind string
	peer []time.Duration
	ours []time.Duration
}

// perfMemRow is the memory one member's group state takes: the growth of
// the live heap (after a collection) across a join that is kept
// (bench_join for a peer).
type perfMemRow struct {
	n          int
	kind       string
	peer, ours int64
}

// perfMedian is the median of d, which is not empty.
func perfMedian(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func perfMS(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 3, 64) }

// TestMLSPerfAgainstPeers times Burrow's engine and each independent peer
// on the same groups in one run: join from a Welcome into an N-member full
// tree, process another member's commit with an UpdatePath, create such a
// commit, and add one member. Peer timings are taken inside the peer
// process (ops bench_join and elapsed), so the pipe and JSON are left out.
// Every peer commit is processed by two of our members, so the timed work
// is real and accepted.
func TestMLSPerfAgainstPeers(t *testing.T) {
	if os.Getenv(perfEnv) != "1" {
		t.Skipf("benchmark, off by default (about a minute): run %s=1 go test ./interop -run TestMLSPerfAgainstPeers -v "+
			"(BURROW_MLS_PERF_SIZES, default 2,10,100,1000; BURROW_MLS_PERF_TSMLS_MAX caps ts-mls, default 100; BURROW_MLS_PERF_REPS, default 11)", perfEnv)
	}
	pc := perfConfigFromEnv(t)
	ctx := context.Background()
	loadBefore, _ := os.ReadFile("/proc/loadavg")

	var cfg Config
	if err := cfg.Available(KindTSMLS); err != nil {
		t.Fatalf("ts-mls peer: %v", err)
	}
	bin, err := cfg.BuildMLSGoPeer(ctx, t.TempDir())
	if err != nil {
		t.Fatalf("build mls-go peer: %v", err)
	}
	cfg.MLSGoPeer = bin

	if err := cfg.Available(KindTSMLS2); err != nil {
		t.Fatalf("ts-mls 2 peer: %v", err)
	}
	var rows []perfRow
	var mem []perfMemRow
	for _, n := range pc.sizes {
		for _, kind := range []string{KindMLSGo, KindTSMLS, KindTSMLS2} {
			if isTSMLS(kind) && n > pc.tsmlsMax {
				t.Logf("%s skipped at N=%d (cap %d, BURROW_MLS_PERF_TSMLS_MAX)", kind, n, pc.tsmlsMax)
				continue
			}
			start := time.Now()
			r, m := perfAgainst(ctx, t, cfg, kind, n, pc.reps, n == pc.worst)
			rows = append(rows, r...)
			mem = append(mem, m...)
			t.Logf("N=%d %s done in %s", n, kind, time.Since(start).Round(time.Millisecond))
		}
	}
	loadAfter, _ := os.ReadFile("/proc/loadavg")

	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "operation\tN\tpeer\tpeer ms\tburrow ms\tpeer/burrow\tpeer min\tburrow min\t\n")
	for _, r := range rows {
		p, o := perfMedian(r.peer), perfMedian(r.ours)
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%.1f×\t%s\t%s\t\n", r.op, r.n, r.kind, perfMS(p), perfMS(o), float64(p)/float64(o),
			perfMS(slices.Min(r.peer)), perfMS(slices.Min(r.ours)))
	}
	for _, m := range mem {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.1f KiB\t%.1f KiB\t%.1f×\t\t\t\n", "memory per member", m.n, m.kind,
			float64(m.peer)/1024, float64(m.ours)/1024, float64(m.peer)/float64(m.ours))
	}
	tw.Flush()
	t.Logf("medians of %d runs each, suite 0x0001; loadavg before: %s; after: %s\n%s",
		pc.reps, strings.TrimSpace(string(loadBefore)), strings.TrimSpace(string(loadAfter)), buf.String())
	for _, r := range rows {
		if perfMedian(r.peer) >= perfMedian(r.ours) {
			continue
		}
		t.Logf("NOTE: %s at N=%d: %s (%s ms) is faster than burrow (%s ms)", r.op, r.n, r.kind, perfMS(perfMedian(r.peer)), perfMS(perfMedian(r.ours)))
	}
}

// perfFixture is one N-member full tree of our engine's members, of
// which two are kept: x (leaf 0, the creator) and y (leaf N-1). q is our
// member that joins beside the peer (leaf N+1, the peer is at leaf N), so
// its commits are the fair counterpart of the peer's.
type perfFixture struct {
	suite   *cipher.Suite
	cfg     mls.GroupConfig
	x, y, q *mls.Group
}

func perfLeaf(name string) mls.LeafParams {
	return mls.LeafParams{Credential: mls.Credential{Type: mls.CredentialBasic, Identity: []byte(name)}}
}

// newPerfFixture builds the full tree without N² work: every member after
// the creator joins by external commit, which carries an UpdatePath, so
// every parent node with members on both sides is set and no leaf is
// unmerged; only the creator processes those commits. The creator then
// commits once with a path too. Each external join validates the whole
// tree, so building costs about N²/2 leaf-signature checks.
func newPerfFixture(t *testing.T, n int) *perfFixture {
	t.Helper()
	suite, err := cipher.New(cipher.CipherSuite(Suite0001))
	if err != nil {
		t.Fatal(err)
	}
	f := &perfFixture{suite: suite, cfg: mls.GroupConfig{RatchetTreeInWelcome: true}}
	signer, err := suite.GenerateSignatureKey()
	if err != nil {
		t.Fatal(err)
	}
	f.x, err = mls.CreateGroup(mls.CipherSuite(Suite0001), []byte(fmt.Sprintf("perf-group-%d", n)), signer, perfLeaf("member-0"), nil, f.cfg)
	if err != nil {
		t.Fatalf("create group: %v", err)
	}
	for i := 1; i < n; i++ {
		gi, err := f.x.GroupInfo(true)
		if err != nil {
			t.Fatalf("group info: %v", err)
		}
		s, err := suite.GenerateSignatureKey()
		if err != nil {
			t.Fatal(err)
		}
		g, commit, err := mls.JoinExternal(gi, s, perfLeaf(fmt.Sprintf("member-%d", i)), mls.ExternalJoinOptions{}, f.cfg)
		if err != nil {
			t.Fatalf("member %d external join: %v", i, err)
		}
		if _, err := f.x.ProcessMessage(commit); err != nil {
			t.Fatalf("creator processes member %d's external commit: %v", i, err)
		}
		f.y = g
	}
	out, err := f.x.Commit(mls.CommitOptions{ForcePath: true})
	if err != nil {
		t.Fatalf("creator's commit: %v", err)
	}
	if err := f.x.MergePendingCommit(); err != nil {
		t.Fatal(err)
	}
	f.deliver(t, out.Commit, "creator's commit", f.x)
	if got := len(f.x.Members()); got != n {
		t.Fatalf("fixture has %d members, want %d", got, n)
	}
	return f
}

// deliver has every tracked member of ours except those in done (the
// sender, and any that already processed it) process a commit, and checks
// that they agree afterwards.
func (f *perfFixture) deliver(t *testing.T, commit []byte, what string, done ...*mls.Group) {
	t.Helper()
	for _, g := range []*mls.Group{f.x, f.y, f.q} {
		if g == nil || slices.Contains(done, g) {
			continue
		}
		if _, err := g.ProcessMessage(commit); err != nil {
			t.Fatalf("our member at leaf %d refuses the %s: %v", g.LeafIndex(), what, err)
		}
	}
	for _, g := range []*mls.Group{f.y, f.q} {
		if g != nil && !bytes.Equal(g.EpochAuthenticator(), f.x.EpochAuthenticator()) {
			t.Fatalf("after the %s our members at leaves 0 and %d disagree", what, g.LeafIndex())
		}
	}
}

type perfKeyPackage struct {
	kp     *mls.KeyPackage
	priv   *mls.KeyPackagePrivate
	signer *cipher.SignatureKey
}

func (f *perfFixture) keyPackage(t *testing.T, name string) perfKeyPackage {
	t.Helper()
	signer, err := f.suite.GenerateSignatureKey()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	kp, priv, err := mls.NewKeyPackage(f.suite, signer, mls.KeyPackageParams{
		Credential: mls.Credential{Type: mls.CredentialBasic, Identity: []byte(name)},
		Capabilities: mls.Capabilities{
			Versions:     []mls.ProtocolVersion{mls.MLS10},
			CipherSuites: []mls.CipherSuite{mls.CipherSuite(Suite0001)},
			Credentials:  []mls.CredentialType{mls.CredentialBasic},
		},
		Lifetime: mls.Lifetime{NotBefore: uint64(now.Add(-time.Hour).Unix()), NotAfter: uint64(now.Add(24 * time.Hour).Unix())},
	})
	if err != nil {
		t.Fatalf("key package: %v", err)
	}
	return perfKeyPackage{kp: kp, priv: priv, signer: signer}
}

func perfAddProposal(kp *mls.KeyPackage) mls.Proposal {
	return mls.Proposal{Type: mls.ProposalAdd, Add: &mls.Add{KeyPackage: *kp}}
}

// peerElapsed asks the peer how long its previous op took inside it.
func perfPeerElapsed(ctx context.Context, t *testing.T, p *Peer) time.Duration {
	t.Helper()
	var res struct {
		ElapsedNS Uint64 `json:"elapsed_ns"`
	}
	if err := p.Call(ctx, "elapsed", nil, &res); err != nil {
		t.Fatalf("elapsed: %v", err)
	}
	return time.Duration(res.ElapsedNS)
}

// perfAgainst runs the four operations at size n against one peer kind,
// our engine's in the same group, and returns one row per operation; with
// worst it adds the worst-case rows (join CPU time, a PrivateMessage commit
// with an Add and a Remove from across the root) and memory per member.
func perfAgainst(ctx context.Context, t *testing.T, cfg Config, kind string, n, reps int, worst bool) ([]perfRow, []perfMemRow) {
	t.Helper()
	f := newPerfFixture(t, n)
	p, err := cfg.Start(ctx, kind)
	if err != nil {
		t.Fatalf("start %s: %v", kind, err)
	}
	defer func() {
		if err := p.Close(); err != nil {
			t.Errorf("close %s: %v", kind, err)
		}
	}()
	call := func(op string, args, out any) {
		t.Helper()
		if err := p.Call(ctx, op, args, out); err != nil {
			t.Fatalf("N=%d: %v", n, err)
		}
	}
	// toPeer has the peer process one of our commits (untimed).
	toPeer := func(commit []byte, sender *mls.Group) {
		t.Helper()
		var pr ProcessResult
		call("process", MessageArgs{Message: commit}, &pr)
		if pr.Kind != "commit" || pr.Epoch != sender.Epoch() {
			t.Fatalf("N=%d: %s processed a %s into epoch %d, want a commit into %d", n, kind, pr.Kind, pr.Epoch, sender.Epoch())
		}
	}
	checkPeerAgrees := func(when string) {
		t.Helper()
		var v ValueResult
		call("epoch_authenticator", nil, &v)
		if !bytes.Equal(v.Value, f.x.EpochAuthenticator()) {
			t.Fatalf("N=%d %s: %s's epoch authenticator differs from ours", n, when, kind)
		}
	}
	row := func(op string) perfRow { return perfRow{op: op, n: n, kind: kind} }

	// (a) The peer (leaf N) and q (leaf N+1) are added by one commit, so
	// both join from the same Welcome and validate the same tree. y (leaf
	// N-1) commits it with a path: every non-blank ancestor of leaves N and
	// N+1 is on y's direct path, so the new tree lists no unmerged leaves
	// and stays full. (ts-mls 1.6.4 refuses a tree in which a leaf's
	// ancestors carry different unmerged_leaves lists, root included.)
	var kpRes KeyPackageResult
	call("create_key_package", CreateKeyPackageArgs{Identity: []byte(kind + "-peer"), Suite: Suite0001}, &kpRes)
	peerKP, err := mls.DecodeKeyPackage(kpRes.KeyPackageBare)
	if err != nil {
		t.Fatalf("decode %s KeyPackage: %v", kind, err)
	}
	joiner := f.keyPackage(t, "burrow-joiner")
	out, err := f.y.Commit(mls.CommitOptions{Proposals: []mls.Proposal{perfAddProposal(peerKP), perfAddProposal(joiner.kp)}, ForcePath: true})
	if err != nil {
		t.Fatalf("add the peer: %v", err)
	}
	if err := f.y.MergePendingCommit(); err != nil {
		t.Fatal(err)
	}
	f.deliver(t, out.Commit, "add of the peer", f.y)
	for i, node := range f.x.Tree() {
		if node != nil && node.Parent != nil && len(node.Parent.UnmergedLeaves) > 0 {
			t.Fatalf("N=%d: node %d lists unmerged leaves %v; the tree should be full", n, i, node.Parent.UnmergedLeaves)
		}
	}

	join, joinCPU := row("join (a)"), row("join CPU (a)")
	var bj struct {
		Epoch     uint64   `json:"epoch"`
		ElapsedNS []Uint64 `json:"elapsed_ns"`
		CPUNS     []Uint64 `json:"cpu_ns"`
	}
	var heapBefore, heapAfter struct {
		HeapBytes int64 `json:"heap_bytes"`
	}
	call("heap", nil, &heapBefore)
	call("bench_join", map[string]any{"welcome": Hex(out.Welcome), "repeat": reps}, &bj)
	call("heap", nil, &heapAfter)
	for _, ns := range bj.CPUNS {
		joinCPU.peer = append(joinCPU.peer, time.Duration(ns))
	}
	if bj.Epoch != f.x.Epoch() || len(bj.ElapsedNS) != reps {
		t.Fatalf("%s joined at epoch %d with %d timings, want epoch %d and %d", kind, bj.Epoch, len(bj.ElapsedNS), f.x.Epoch(), reps)
	}
	for _, ns := range bj.ElapsedNS {
		join.peer = append(join.peer, time.Duration(ns))
	}
	for range reps {
		start, cpuStart := time.Now(), perfCPU()
		g, err := mls.JoinFromWelcome(out.Welcome, joiner.kp, joiner.priv, joiner.signer, mls.JoinOptions{}, f.cfg)
		join.ours = append(join.ours, time.Since(start))
		joinCPU.ours = append(joinCPU.ours, perfCPU()-cpuStart)
		if err != nil {
			t.Fatalf("our joiner: %v", err)
		}
		if !bytes.Equal(g.EpochAuthenticator(), f.x.EpochAuthenticator()) {
			t.Fatal("our joiner disagrees with the group")
		}
		if f.q == nil {
			f.q = g
		}
	}
	// Our member's state is what more joins, each from its own copy of
	// the Welcome as a client receives it, add to the live heap, per join.
	before := perfHeap()
	kept := make([]*mls.Group, reps)
	for i := range kept {
		if kept[i], err = mls.JoinFromWelcome(bytes.Clone(out.Welcome), joiner.kp, joiner.priv, joiner.signer, mls.JoinOptions{}, f.cfg); err != nil {
			t.Fatalf("our joiner: %v", err)
		}
	}
	ours := (perfHeap() - before) / int64(reps)
	runtime.KeepAlive(kept)
	mem := []perfMemRow{{n: n, kind: kind, peer: heapAfter.HeapBytes - heapBefore.HeapBytes, ours: ours}}
	if f.q.LeafIndex() != uint32(n+1) {
		t.Fatalf("our joiner is at leaf %d, want %d", f.q.LeafIndex(), n+1)
	}
	checkPeerAgrees("after join")

	// (b) x (leaf 0) commits with a path; the peer and q, siblings, each
	// process it.
	process := row("process commit (b)")
	for range reps {
		out, err := f.x.Commit(mls.CommitOptions{ForcePath: true})
		if err == nil {
			err = f.x.MergePendingCommit()
		}
		if err != nil {
			t.Fatalf("x commits: %v", err)
		}
		toPeer(out.Commit, f.x)
		process.peer = append(process.peer, perfPeerElapsed(ctx, t, p))
		start := time.Now()
		_, err = f.q.ProcessMessage(out.Commit)
		process.ours = append(process.ours, time.Since(start))
		if err != nil {
			t.Fatalf("q processes x's commit: %v", err)
		}
		f.deliver(t, out.Commit, "x's commit", f.x, f.q)
	}
	checkPeerAgrees("after x's commits")

	// (c) the peer and q take turns committing with a path; ours is
	// Commit plus MergePendingCommit, which is what the peers'
	// commit_update does. Every commit is accepted by all the others.
	commit := row("commit (c)")
	for range reps {
		var cr CommitResult
		call("commit_update", nil, &cr)
		commit.peer = append(commit.peer, perfPeerElapsed(ctx, t, p))
		f.deliver(t, cr.Commit, "peer's commit")

		start := time.Now()
		out, err := f.q.Commit(mls.CommitOptions{ForcePath: true})
		if err == nil {
			err = f.q.MergePendingCommit()
		}
		commit.ours = append(commit.ours, time.Since(start))
		if err != nil {
			t.Fatalf("q commits: %v", err)
		}
		toPeer(out.Commit, f.q)
		f.deliver(t, out.Commit, "q's commit", f.q)
	}
	checkPeerAgrees("after the commits")

	// (d) add one member, Commit plus Welcome, the peer and q in turn, so
	// the group grows by one per add for both. ts-mls commits an add
	// without a path and mls-go with one; q does the same as the peer it
	// is compared with.
	withPath := kind == KindMLSGo
	add := row("add member, no path (d)")
	if withPath {
		add.op = "add member, with path (d)"
	}
	for i := range reps {
		kp := f.keyPackage(t, fmt.Sprintf("added-by-peer-%d", i))
		bare, err := kp.kp.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		var cr CommitResult
		call("add_member", AddMemberArgs{KeyPackage: bare}, &cr)
		add.peer = append(add.peer, perfPeerElapsed(ctx, t, p))
		if len(cr.Welcome) == 0 {
			t.Fatalf("%s's add has no Welcome", kind)
		}
		f.deliver(t, cr.Commit, "peer's add")

		kp = f.keyPackage(t, fmt.Sprintf("added-by-burrow-%d", i))
		start := time.Now()
		out, err := f.q.Commit(mls.CommitOptions{Proposals: []mls.Proposal{perfAddProposal(kp.kp)}, ForcePath: withPath})
		if err == nil {
			err = f.q.MergePendingCommit()
		}
		add.ours = append(add.ours, time.Since(start))
		if err != nil {
			t.Fatalf("q adds: %v", err)
		}
		if len(out.Welcome) == 0 {
			t.Fatal("our add has no Welcome")
		}
		toPeer(out.Commit, f.q)
		f.deliver(t, out.Commit, "q's add", f.q)
	}
	checkPeerAgrees("after the adds")
	if !worst {
		return []perfRow{join, process, commit, add}, nil
	}

	// (e) The worst case: x (leaf 0) commits, as a PrivateMessage,
	// one Add and one Remove (of a leaf in x's half, so a path is needed);
	// the peer (leaf N) and q (leaf N+1) sit in the other half of the tree,
	// so x's direct path meets theirs only at the root.
	half := uint32(1)
	for half*2 < uint32(n+2) {
		half *= 2
	}
	if f.q.LeafIndex() < half || f.x.LeafIndex() >= half {
		t.Fatalf("x at leaf %d and q at leaf %d are not in different halves of %d leaves", f.x.LeafIndex(), f.q.LeafIndex(), 2*half)
	}
	private := row("process PrivateMessage commit, Add+Remove across the root (e)")
	for i := range reps {
		kp := f.keyPackage(t, fmt.Sprintf("worst-%d", i))
		removed := uint32(1 + i) // leaves 1.. in x's half, never y's
		out, err := f.x.Commit(mls.CommitOptions{
			Proposals:  []mls.Proposal{perfAddProposal(kp.kp), {Type: mls.ProposalRemove, Remove: &mls.Remove{Removed: removed}}},
			WireFormat: mls.WireFormatPrivateMessage,
		})
		if err == nil {
			err = f.x.MergePendingCommit()
		}
		if err != nil {
			t.Fatalf("x's worst-case commit: %v", err)
		}
		toPeer(out.Commit, f.x)
		private.peer = append(private.peer, perfPeerElapsed(ctx, t, p))
		start := time.Now()
		_, err = f.q.ProcessMessage(out.Commit)
		private.ours = append(private.ours, time.Since(start))
		if err != nil {
			t.Fatalf("q processes x's worst-case commit: %v", err)
		}
		f.deliver(t, out.Commit, "x's worst-case commit", f.x, f.q)
	}
	checkPeerAgrees("after the worst-case commits")
	rows := []perfRow{join, process, commit, add, private}
	if len(joinCPU.peer) == reps {
		rows = append(rows, joinCPU)
	}
	return rows, mem
}

// perfHeap is the live heap after a full collection.
func perfHeap() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// perfCPU is the CPU time (user and system) this process has used.
func perfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
