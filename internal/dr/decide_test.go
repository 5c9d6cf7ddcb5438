package dr

import "testing"

func TestReconcile(t *testing.T) {
	p1 := State{Region: "primary", Role: Active, Epoch: 1, ActiveRegion: "primary"}
	s1 := State{Region: "secondary", Role: Passive, Epoch: 1, ActiveRegion: "primary"}
	fresh := State{Region: "secondary", Role: Passive}
	cases := []struct {
		name         string
		self         State
		peer, router *View
		want         Decision
	}{
		{"leader with an unreachable peer goes on", p1, nil, nil, Decision{}},
		{"leader with its follower goes on", p1, &View{Region: "secondary", Role: Passive, Epoch: 1, Active: "primary"}, nil, Decision{}},
		{"leader sees its peer promoted: fence", p1, &View{Region: "secondary", Role: Active, Epoch: 2}, nil,
			Decision{Fence: true, Epoch: 2, Leader: "secondary"}},
		{"leader unreachable from its peer, but the router knows epoch 2", p1, nil, &View{Epoch: 2, Active: "secondary"},
			Decision{Fence: true, Epoch: 2, Leader: "secondary"}},
		{"draining leader fences too", State{Region: "primary", Role: Draining, Epoch: 1, ActiveRegion: "primary"},
			&View{Region: "secondary", Role: Active, Epoch: 2}, nil, Decision{Fence: true, Epoch: 2, Leader: "secondary"}},
		{"sealed leader hands over when its peer is promoted", State{Region: "primary", Role: Sealed, Epoch: 3, ActiveRegion: "primary"},
			&View{Region: "secondary", Role: Active, Epoch: 4}, nil, Decision{Fence: true, Epoch: 4, Leader: "secondary"}},
		{"stale router view does not fence the leader", State{Region: "primary", Role: Active, Epoch: 3, ActiveRegion: "primary"},
			nil, &View{Epoch: 2, Active: "secondary"}, Decision{}},
		{"passive peer that knows a higher epoch fences the leader", p1, &View{Region: "secondary", Role: Passive, Epoch: 2, Active: "third"}, nil,
			Decision{Fence: true, Epoch: 2, Leader: "third"}},
		{"tie after a partition: the first name keeps leading", State{Region: "b", Role: Active, Epoch: 2, ActiveRegion: "b"},
			&View{Region: "a", Role: Active, Epoch: 2}, nil, Decision{Fence: true, Epoch: 2, Leader: "a"}},
		{"tie after a partition: the other side agrees", State{Region: "a", Role: Active, Epoch: 2, ActiveRegion: "a"},
			&View{Region: "b", Role: Active, Epoch: 2}, nil, Decision{}},
		{"follower learns the first epoch", fresh, &View{Region: "primary", Role: Active, Epoch: 1}, nil,
			Decision{Learn: true, Epoch: 1, Leader: "primary"}},
		{"follower already knows", s1, &View{Region: "primary", Role: Active, Epoch: 1}, nil, Decision{}},
		{"follower of a sealed leader has nothing to learn", s1, &View{Region: "primary", Role: Sealed, Epoch: 1}, nil, Decision{}},
		{"former leader, now passive, learns a later failback", State{Region: "primary", Role: Passive, Epoch: 2, ActiveRegion: "secondary"},
			&View{Region: "secondary", Role: Passive, Epoch: 3, Active: "primary"}, nil, Decision{}},
		{"follower never takes the lead from the router's word", s1, nil, &View{Epoch: 2, Active: "secondary"}, Decision{}},
		{"peer with epoch 0 (a new secondary) is ignored", p1, &View{Region: "secondary", Role: Passive}, nil, Decision{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Reconcile(c.self, c.peer, c.router); got != c.want {
				t.Errorf("Reconcile = %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestCommonSeq(t *testing.T) {
	terms := []Term{
		{Epoch: 1, Region: "primary", StartSeq: 1},
		{Epoch: 2, Region: "secondary", StartSeq: 120}, // unplanned: the secondary had applied 119
		{Epoch: 3, Region: "primary", StartSeq: 300},   // failback
	}
	cases := []struct {
		from int64
		want int64
		ok   bool
	}{
		{1, 119, true},
		{2, 299, true},
		{3, 0, false},
		{0, 0, true},
	}
	for _, c := range cases {
		got, ok := CommonSeq(terms, c.from)
		if got != c.want || ok != c.ok {
			t.Errorf("CommonSeq(from %d) = %d, %v; want %d, %v", c.from, got, ok, c.want, c.ok)
		}
	}
}
