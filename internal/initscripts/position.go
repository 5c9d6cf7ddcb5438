package initscripts

// place returns the run order after the script id is put at position pos
// of order (a new script is inserted; an existing one is moved). The other
// scripts keep their relative order: the one at pos and every later one
// run one later. A negative pos (none given) or one past the end means
// last. Positions stay contiguous from 0. It is pure.
func place(order []string, id string, pos int) []string {
	out := make([]string, 0, len(order)+1)
	for _, x := range order {
		if x != id {
			out = append(out, x)
		}
	}
	if pos < 0 || pos > len(out) {
		pos = len(out)
	}
	out = append(out, "")
	copy(out[pos+1:], out[pos:])
	out[pos] = id
	return out
}

// without returns the run order after the script id is deleted.
func without(order []string, id string) []string {
	out := make([]string, 0, len(order))
	for _, x := range order {
		if x != id {
			out = append(out, x)
		}
	}
	return out
}
