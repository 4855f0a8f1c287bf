package resilienceotel_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	resilienceotel "github.com/resilience-go/resilience/contrib/otel"
)

// codeError is an error with a dynamic message, of a type of its own.
type codeError struct{ code int }

func (e *codeError) Error() string { return fmt.Sprintf("status %d", e.code) }

// newTracerProvider returns a TracerProvider that samples every span and
// hands it to sr.
func newTracerProvider(sr *tracetest.SpanRecorder) *sdktrace.TracerProvider {
	return sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
}

func newTracer(sr *tracetest.SpanRecorder) trace.Tracer {
	return newTracerProvider(sr).Tracer("test")
}

// meter is an SDK MeterProvider read by a ManualReader.
type meter struct {
	*sdkmetric.MeterProvider
	r *sdkmetric.ManualReader
}

func newMeter() meter {
	r := sdkmetric.NewManualReader()
	return meter{sdkmetric.NewMeterProvider(sdkmetric.WithReader(r)), r}
}

// opt returns the option that records to m.
func (m meter) opt() resilienceotel.Option { return resilienceotel.WithMeterProvider(m) }

// collect reads every metric of this package's scope and returns a line per
// data point, sorted:
//
//	name unit instrument {attributes} value
//
// where instrument is counter, updowncounter, gauge or histogram, and value
// is the sum or last value, or for a histogram count=, sum= and, with
// buckets, the bucket counts.
func (m meter) collect(t testing.TB, buckets bool) []string {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, m.r.Collect(context.Background(), &rm))
	return lines(t, rm, buckets)
}

func lines(t testing.TB, rm metricdata.ResourceMetrics, buckets bool) []string {
	t.Helper()
	var out []string
	for _, sm := range rm.ScopeMetrics {
		require.Equal(t, resilienceotel.ScopeName, sm.Scope.Name, "scope")
		for _, md := range sm.Metrics {
			head := md.Name + " " + md.Unit + " "
			switch d := md.Data.(type) {
			case metricdata.Sum[int64]:
				require.Equal(t, metricdata.CumulativeTemporality, d.Temporality, md.Name)
				for _, p := range d.DataPoints {
					out = append(out, fmt.Sprintf("%s%s %s %d", head, sumKind(d.IsMonotonic), attrs(p.Attributes), p.Value))
				}
			case metricdata.Sum[float64]:
				for _, p := range d.DataPoints {
					out = append(out, fmt.Sprintf("%s%s %s %g", head, sumKind(d.IsMonotonic), attrs(p.Attributes), p.Value))
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					out = append(out, fmt.Sprintf("%sgauge %s %d", head, attrs(p.Attributes), p.Value))
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					out = append(out, fmt.Sprintf("%sgauge %s %g", head, attrs(p.Attributes), p.Value))
				}
			case metricdata.Histogram[int64]:
				for _, p := range d.DataPoints {
					out = append(out, head+"histogram "+attrs(p.Attributes)+" "+hist(p.Count, float64(p.Sum), p.Bounds, p.BucketCounts, buckets))
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out = append(out, head+"histogram "+attrs(p.Attributes)+" "+hist(p.Count, p.Sum, p.Bounds, p.BucketCounts, buckets))
				}
			default:
				t.Fatalf("%s: unexpected data %T", md.Name, md.Data)
			}
		}
	}
	slices.Sort(out)
	return out
}

func sumKind(monotonic bool) string {
	if monotonic {
		return "counter"
	}
	return "updowncounter"
}

func attrs(s attribute.Set) string {
	kvs := make([]string, 0, s.Len())
	for _, kv := range s.ToSlice() {
		kvs = append(kvs, string(kv.Key)+"="+kv.Value.String())
	}
	return "{" + strings.Join(kvs, " ") + "}"
}

func hist(count uint64, sum float64, bounds []float64, counts []uint64, buckets bool) string {
	s := fmt.Sprintf("count=%d sum=%g", count, sum)
	if buckets {
		s += fmt.Sprintf(" bounds=%v counts=%v", bounds, counts)
	}
	return s
}

// spanEvents returns the events of span s as "name {attributes}".
func spanEvents(s sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, e := range s.Events() {
		out = append(out, e.Name+" "+attrs(attribute.NewSet(e.Attributes...)))
	}
	return out
}

// spanAttrs returns the attributes of span s.
func spanAttrs(s sdktrace.ReadOnlySpan) string {
	return attrs(attribute.NewSet(s.Attributes()...))
}

// attrValue returns the value of span s's attribute key, or "".
func attrValue(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

// dataPointSets returns the attribute sets of data's points.
func dataPointSets(data metricdata.Aggregation) []attribute.Set {
	var out []attribute.Set
	switch d := data.(type) {
	case metricdata.Sum[int64]:
		for _, p := range d.DataPoints {
			out = append(out, p.Attributes)
		}
	case metricdata.Histogram[int64]:
		for _, p := range d.DataPoints {
			out = append(out, p.Attributes)
		}
	case metricdata.Histogram[float64]:
		for _, p := range d.DataPoints {
			out = append(out, p.Attributes)
		}
	}
	return out
}
