package saga

// WithAfterCommit calls f after each of the coordinator's durable writes, so
// that a test can crash the coordinator at each of them.
func WithAfterCommit(f func()) Option {
	return optionFunc(func(c *config) { c.afterCommit = f })
}

// WithPurgeBatch sets how many instances Purge deletes in one transaction,
// so that a test can make it take several.
func WithPurgeBatch(n int) Option {
	return optionFunc(func(c *config) { c.purgeBatch = n })
}
