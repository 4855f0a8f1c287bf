package rabbitoutbox

import "time"

// SetCloseTimeout sets how long p.Close waits for the broker, for tests of
// a broker that stops answering.
func SetCloseTimeout(p *Publisher, d time.Duration) { p.closeTimeout = d }
