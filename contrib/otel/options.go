package resilienceotel

import (
	"strconv"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the meters and tracers this
// package gets from its providers: the module's import path.
const ScopeName = "github.com/resilience-go/resilience/contrib/otel"

// An Option configures [NewObserver], the Register functions, [SagaSpans],
// [InjectMessage] and [Publisher]. Each takes every Option and uses those
// that concern it: a meter provider means nothing to [Publisher].
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	mp        metric.MeterProvider
	tp        trace.TracerProvider
	prop      propagation.TextMapPropagator
	errorType func(error) string
}

// newConfig applies opts over the defaults. It panics, naming the caller,
// if an option is nil.
func newConfig(caller string, opts []Option) config {
	var c config
	for i, o := range opts {
		if o == nil {
			panic("resilienceotel: " + caller + ": nil Option at index " + strconv.Itoa(i))
		}
		o.apply(&c)
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	if c.prop == nil {
		c.prop = propagation.TraceContext{}
	}
	if c.errorType == nil {
		c.errorType = ErrorType
	}
	return c
}

func (c *config) meter() metric.Meter  { return c.mp.Meter(ScopeName) }
func (c *config) tracer() trace.Tracer { return c.tp.Tracer(ScopeName) }

// WithMeterProvider sets where metrics go. Default: the global provider,
// otel.GetMeterProvider, as it is when the observer or instrument is made
// (the global provider forwards to one set later). mp must not be nil.
func WithMeterProvider(mp metric.MeterProvider) Option {
	if mp == nil {
		panic("resilienceotel: WithMeterProvider(nil)")
	}
	return optionFunc(func(c *config) { c.mp = mp })
}

// WithTracerProvider sets where the spans of [SagaSpans] and [Publisher]
// go. The events an [Observer] adds go to the caller's span, whatever its
// provider. Default: the global provider, otel.GetTracerProvider, as it is
// when the policy or publisher is made. tp must not be nil.
func WithTracerProvider(tp trace.TracerProvider) Option {
	if tp == nil {
		panic("resilienceotel: WithTracerProvider(nil)")
	}
	return optionFunc(func(c *config) { c.tp = tp })
}

// WithPropagator sets how [InjectMessage] writes a span's context into a
// message's headers and how [Publisher] reads it back. Default:
// propagation.TraceContext, the W3C traceparent and tracestate headers,
// whatever the global propagator is: the message outlives the process, and
// its consumers must read what it carries. p must not be nil.
func WithPropagator(p propagation.TextMapPropagator) Option {
	if p == nil {
		panic("resilienceotel: WithPropagator(nil)")
	}
	return optionFunc(func(c *config) { c.prop = p })
}

// WithErrorType sets how an error becomes the value of the error.type
// attribute. f must return one of a small, fixed set of values for any
// error (never its message, never an ID), and "" for nil; see [ErrorType].
// Default: ErrorType. f must not be nil.
func WithErrorType(f func(error) string) Option {
	if f == nil {
		panic("resilienceotel: WithErrorType(nil)")
	}
	return optionFunc(func(c *config) { c.errorType = f })
}
