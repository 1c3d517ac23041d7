package steer

// CloseTwin closes one twin alone, as if it had died: 0 the unclamped, 1
// the clamped.
func (g *Group) CloseTwin(i int) error { return g.lns[i].Close() }
