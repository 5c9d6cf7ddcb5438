package dr

// View is what a region learned of another participant (the peer region,
// or the router) at one moment.
type View struct {
	// Region is the participant's name ("" for the router) and Role its
	// role (empty for the router).
	Region string
	Role   Role
	// Epoch is the highest epoch it knows of and Active the region it
	// believes holds it.
	Epoch  int64
	Active string
}

// Decision is what a region must do about the epochs it saw.
type Decision struct {
	// Fence: this region leads but a higher epoch exists (or a tie it
	// loses): stop writes and scheduling now, then rejoin as a follower of
	// Leader.
	Fence bool
	// Learn: a passive region records a newer epoch and its leader.
	Learn  bool
	Epoch  int64
	Leader string
}

// Reconcile decides, from this region's state and what it saw of its peer
// and of the router (nil when unknown), whether it may go on as it is. It is
// pure: the peer watch, the startup check and the replication endpoint all
// call it with what they saw.
//
// The rule is the epoch's: a region leads only while no higher epoch
// exists. Promotion always takes an epoch above every one the promoted
// region knows, so the only tie is two promotions that did not see each
// other (a partition); the region whose name sorts first keeps leading, so
// both sides reach the same answer without talking.
func Reconcile(self State, peer, router *View) Decision {
	best := View{Region: self.Region, Role: self.Role, Epoch: self.Epoch, Active: self.ActiveRegion}
	consider := func(v *View) {
		if v == nil || v.Epoch == 0 {
			return
		}
		active := v.Active
		if v.Role.Leads() {
			active = v.Region // a region that leads speaks for itself
		}
		if active == "" {
			return
		}
		switch {
		case v.Epoch > best.Epoch:
			best = View{Epoch: v.Epoch, Active: active}
		case v.Epoch == best.Epoch && active != best.Active && best.Active != "" && active < best.Active:
			best = View{Epoch: v.Epoch, Active: active}
		case v.Epoch == best.Epoch && best.Active == "":
			best.Active = active
		}
	}
	consider(peer)
	consider(router)

	if self.Role.Leads() {
		if best.Epoch > self.Epoch || (best.Active != "" && best.Active != self.Region) {
			return Decision{Fence: true, Epoch: best.Epoch, Leader: best.Active}
		}
		return Decision{}
	}
	if best.Active == self.Region || best.Active == "" {
		// Only this region's own promotion makes it lead.
		return Decision{}
	}
	if best.Epoch > self.Epoch || best.Active != self.ActiveRegion {
		return Decision{Learn: true, Epoch: best.Epoch, Leader: best.Active}
	}
	return Decision{}
}

// CommonSeq is the last sequence number that a region which led at epoch
// from shares with the regions that led after it: the first later term
// began right after the change its region had applied last. It returns
// false when no later term is known.
func CommonSeq(terms []Term, from int64) (int64, bool) {
	var first *Term
	for i := range terms {
		t := &terms[i]
		if t.Epoch > from && (first == nil || t.Epoch < first.Epoch) {
			first = t
		}
	}
	if first == nil {
		return 0, false
	}
	return first.StartSeq - 1, true
}
