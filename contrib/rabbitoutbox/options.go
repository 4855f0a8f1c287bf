package rabbitoutbox

import (
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/resilience-go/resilience/outbox"
)

// An Option configures a [Publisher] made by [Dial] or [New], or the
// mapping of [Encode].
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	exchange    string
	route       func(outbox.Message) (exchange, routingKey string)
	mandatory   bool
	persistent  bool
	contentType string
	dial        *amqp.Config
	err         error // the first value out of range that may come from configuration
}

// newConfig returns the configuration of opts, the options of fn, and an
// error if a value that may come from configuration is out of range.
func newConfig(fn string, opts []Option) (config, error) {
	c := config{mandatory: true, persistent: true}
	for _, o := range opts {
		if o == nil {
			panic("rabbitoutbox: " + fn + ": nil Option")
		}
		o.apply(&c)
	}
	return c, c.err
}

// tooLong records that option's value is longer than AMQP's 255 bytes.
func (c *config) tooLong(option, value string) {
	if len(value) > 255 && c.err == nil {
		c.err = fmt.Errorf("%w: %s of %d bytes", ErrFieldTooLong, option, len(value))
	}
}

// WithExchange publishes every message to the exchange name, with its
// Topic as the routing key. Default: "", the default exchange, which
// routes a message to the queue its Topic names. name must be at most 255
// bytes: [Dial], [New] and [Encode] return an error wrapping
// [ErrFieldTooLong] for a longer one. Of WithExchange and [WithRouting],
// the last given wins.
func WithExchange(name string) Option {
	return optionFunc(func(c *config) {
		c.exchange, c.route = name, nil
		c.tooLong("WithExchange", name)
	})
}

// WithRouting sets where each message goes: f returns the exchange and the
// routing key for it, such as the Topic as the exchange and the Key as the
// routing key. f must be fast and must not block; a message for which it
// returns a name longer than 255 bytes fails with [ErrFieldTooLong].
// Default: the exchange of [WithExchange] and the Topic as the routing key.
// f must not be nil. Of WithRouting and WithExchange, the last given wins.
func WithRouting(f func(m outbox.Message) (exchange, routingKey string)) Option {
	if f == nil {
		panic("rabbitoutbox: WithRouting: nil f")
	}
	return optionFunc(func(c *config) { c.route = f })
}

// WithMandatory sets the mandatory flag of each publish. When on, the broker
// returns a message that matches no queue, and Publish fails it with a
// [*ReturnedError], so the relay keeps it and tries again; when off, the
// broker confirms and drops it. Default: on.
func WithMandatory(on bool) Option {
	return optionFunc(func(c *config) { c.mandatory = on })
}

// WithPersistent sets the delivery mode of each message: persistent (2),
// written to disk by a durable queue before the broker confirms it, or
// transient (1), which a broker restart loses. Default: persistent.
func WithPersistent(on bool) Option {
	return optionFunc(func(c *config) { c.persistent = on })
}

// WithContentType sets the content-type property of every message, such as
// "application/json". Default: "", none. ct must be at most 255 bytes:
// [Dial], [New] and [Encode] return an error wrapping [ErrFieldTooLong] for
// a longer one.
func WithContentType(ct string) Option {
	return optionFunc(func(c *config) {
		c.contentType = ct
		c.tooLong("WithContentType", ct)
	})
}

// WithDialConfig sets the configuration [Dial] connects with, on every
// connection it makes: TLS, SASL, heartbeat, client properties. Default:
// that of amqp.Dial (a 10s heartbeat, the credentials and TLS settings of
// the URL). Its Dial function, if any, makes the network connection
// without ctx, and applies the URL's connection_timeout only if it does so
// itself (amqp.DefaultDial(timeout) does); ctx ending still cuts the
// handshake that follows short. Without one, the Publisher connects within
// ctx and the URL's connection_timeout. cfg.Recovery must be nil: the
// Publisher reconnects by itself. [New], whose connection is made, panics
// when given this option.
func WithDialConfig(cfg amqp.Config) Option {
	if cfg.Recovery != nil {
		panic("rabbitoutbox: WithDialConfig: want cfg.Recovery nil; the Publisher reconnects by itself")
	}
	return optionFunc(func(c *config) { c.dial = &cfg })
}
