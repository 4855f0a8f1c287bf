package saga

// WithAfterCommit calls f after each of the coordinator's durable writes, so
// that a test can crash the coordinator at each of them.
func WithAfterCommit(f func()) Option {
	return optionFunc(func(c *config) { c.afterCommit = f })
}
