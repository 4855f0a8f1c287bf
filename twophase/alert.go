package twophase

import "time"

// AlertAfter returns the age past which c reports a branch left in doubt
// as an alert ([WithAlertAfter]), for a view of the branches in doubt to
// mark the same ones.
func (c *Coordinator) AlertAfter() time.Duration { return c.cfg.alertAfter }
