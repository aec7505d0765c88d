package treemath_test

import (
	"slices"
	"testing"

	"github.com/burrow-relay/burrow/mls/internal/vectortest"
	"github.com/burrow-relay/burrow/mls/treemath"
)

func TestTreeMathVectors(t *testing.T) {
	var cases []struct {
		NLeaves vectortest.Uint      `json:"n_leaves"`
		NNodes  vectortest.Uint      `json:"n_nodes"`
		Root    vectortest.Uint      `json:"root"`
		Left    []vectortest.OptUint `json:"left"`
		Right   []vectortest.OptUint `json:"right"`
		Parent  []vectortest.OptUint `json:"parent"`
		Sibling []vectortest.OptUint `json:"sibling"`
	}
	vectortest.Load(t, "tree-math.json", &cases)
	count := vectortest.NewCounter("tree-math.json")
	checked := 0
	for i, tc := range cases {
		count.Add("all")
		n := uint32(tc.NLeaves)
		if got := treemath.NodeWidth(n); uint64(got) != uint64(tc.NNodes) {
			t.Errorf("case %d: NodeWidth(%d) = %d, want %d", i, n, got, tc.NNodes)
		}
		if got := treemath.Root(n); uint64(got) != uint64(tc.Root) {
			t.Errorf("case %d: Root(%d) = %d, want %d", i, n, got, tc.Root)
		}
		for name, field := range map[string]struct {
			want []vectortest.OptUint
			f    func(treemath.NodeIndex) (treemath.NodeIndex, bool)
		}{
			"left":    {tc.Left, treemath.Left},
			"right":   {tc.Right, treemath.Right},
			"parent":  {tc.Parent, func(x treemath.NodeIndex) (treemath.NodeIndex, bool) { return treemath.Parent(x, n) }},
			"sibling": {tc.Sibling, func(x treemath.NodeIndex) (treemath.NodeIndex, bool) { return treemath.Sibling(x, n) }},
		} {
			if uint64(len(field.want)) != uint64(tc.NNodes) {
				t.Errorf("case %d: %s has %d entries, want %d", i, name, len(field.want), tc.NNodes)
			}
			for x, want := range field.want {
				got, ok := field.f(treemath.NodeIndex(x))
				if ok != want.Valid || (ok && uint64(got) != want.Value) {
					t.Errorf("case %d: %s(%d) = %d,%v, want %d,%v", i, name, x, got, ok, want.Value, want.Valid)
				}
				checked++
			}
		}
	}
	count.Check(t, len(cases))
	if checked == 0 {
		t.Fatal("no node checked")
	}
}

func TestPaths(t *testing.T) {
	tests := []struct {
		x, y     treemath.NodeIndex
		n        uint32
		direct   []treemath.NodeIndex
		copath   []treemath.NodeIndex
		ancestor treemath.NodeIndex
		level    uint
	}{
		{x: 0, y: 0, n: 1, direct: nil, copath: nil, ancestor: 0, level: 0},
		{x: 0, y: 2, n: 2, direct: []treemath.NodeIndex{1}, copath: []treemath.NodeIndex{2}, ancestor: 1},
		{x: 0, y: 6, n: 4, direct: []treemath.NodeIndex{1, 3}, copath: []treemath.NodeIndex{2, 5}, ancestor: 3},
		{x: 4, y: 6, n: 4, direct: []treemath.NodeIndex{5, 3}, copath: []treemath.NodeIndex{6, 1}, ancestor: 5},
		{x: 5, y: 4, n: 4, direct: []treemath.NodeIndex{3}, copath: []treemath.NodeIndex{1}, ancestor: 5, level: 1},
		{x: 3, y: 3, n: 4, direct: nil, copath: nil, ancestor: 3, level: 2},
		{x: 10, y: 12, n: 8, direct: []treemath.NodeIndex{9, 11, 7}, copath: []treemath.NodeIndex{8, 13, 3}, ancestor: 11},
		{x: 2, y: 12, n: 8, direct: []treemath.NodeIndex{1, 3, 7}, copath: []treemath.NodeIndex{0, 5, 11}, ancestor: 7},
	}
	for _, tc := range tests {
		if got := treemath.DirectPath(tc.x, tc.n); !slices.Equal(got, tc.direct) {
			t.Errorf("DirectPath(%d, %d) = %v, want %v", tc.x, tc.n, got, tc.direct)
		}
		if got := treemath.Copath(tc.x, tc.n); !slices.Equal(got, tc.copath) {
			t.Errorf("Copath(%d, %d) = %v, want %v", tc.x, tc.n, got, tc.copath)
		}
		if got := treemath.CommonAncestor(tc.x, tc.y); got != tc.ancestor {
			t.Errorf("CommonAncestor(%d, %d) = %d, want %d", tc.x, tc.y, got, tc.ancestor)
		}
		if got := treemath.CommonAncestor(tc.y, tc.x); got != tc.ancestor {
			t.Errorf("CommonAncestor(%d, %d) = %d, want %d", tc.y, tc.x, got, tc.ancestor)
		}
		if got := treemath.Level(tc.x); got != tc.level {
			t.Errorf("Level(%d) = %d, want %d", tc.x, got, tc.level)
		}
		if !treemath.InSubtree(tc.x, tc.ancestor) || !treemath.InSubtree(tc.y, tc.ancestor) {
			t.Errorf("%d or %d not under %d", tc.x, tc.y, tc.ancestor)
		}
	}
	if _, ok := treemath.Parent(7, 4); ok {
		t.Error("node 7 is outside a 4-leaf tree but has a parent")
	}
	if treemath.LeafIndex(3).NodeIndex() != 6 || treemath.NodeIndex(6).LeafIndex() != 3 || !treemath.NodeIndex(6).IsLeaf() || treemath.NodeIndex(5).IsLeaf() {
		t.Error("leaf/node index conversion")
	}
}

func TestCommonAncestorMatchesPaths(t *testing.T) {
	const n = 64
	for x := treemath.NodeIndex(0); x < treemath.NodeIndex(treemath.NodeWidth(n)); x++ {
		for y := treemath.NodeIndex(0); y < treemath.NodeIndex(treemath.NodeWidth(n)); y += 3 {
			// The semantic definition: the first node on x's path (x
			// included) that is also on y's path.
			px := append([]treemath.NodeIndex{x}, treemath.DirectPath(x, n)...)
			py := append([]treemath.NodeIndex{y}, treemath.DirectPath(y, n)...)
			var want treemath.NodeIndex
			for _, a := range px {
				if slices.Contains(py, a) {
					want = a
					break
				}
			}
			if got := treemath.CommonAncestor(x, y); got != want {
				t.Fatalf("CommonAncestor(%d, %d) = %d, want %d", x, y, got, want)
			}
		}
	}
}
