package natsoutbox

import (
	"fmt"
	"strings"
)

// An Option configures a [Publisher] made by [New].
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	subject     func(topic string) string
	stream      string
	maxInFlight int
}

func defaultConfig() config {
	return config{
		subject:     func(topic string) string { return topic },
		maxInFlight: 1024,
	}
}

// WithSubject sets the function that maps a message's topic to the subject
// it is published to, such as one that adds a prefix. It runs for every
// message, perhaps more than once, and on every goroutine that calls
// Publish: it must be fast and safe for concurrent use. A subject it returns
// that NATS refuses (empty, or with white space) fails that message.
// Default: the topic itself. f must not be nil.
func WithSubject(f func(topic string) string) Option {
	if f == nil {
		panic("natsoutbox: WithSubject: nil f")
	}
	return optionFunc(func(c *config) { c.subject = f })
}

// WithExpectStream makes the server refuse a message unless the stream that
// takes its subject is the one named (the Nats-Expected-Stream header): a
// message meant for one stream never lands in another one by a mistake of
// configuration. Default: any stream. name must be a valid stream name: not
// empty, without white space, '.', '*', '>', '/' or '\'.
func WithExpectStream(name string) Option {
	if name == "" || strings.ContainsAny(name, " \t\r\n.*>/\\") {
		panic(fmt.Sprintf("natsoutbox: WithExpectStream(%q): want a stream name", name))
	}
	return optionFunc(func(c *config) { c.stream = name })
}

// WithMaxInFlight bounds how many messages of one call to Publish await
// their acknowledgement at once; the others are sent as acknowledgements
// come. Default: 1024. n must be at least 1.
func WithMaxInFlight(n int) Option {
	if n < 1 {
		panic(fmt.Sprintf("natsoutbox: WithMaxInFlight(%d): want n >= 1", n))
	}
	return optionFunc(func(c *config) { c.maxInFlight = n })
}
