package resiliencehttp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync/atomic"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/keep"
)

// errHedgeStatus tells the hedger that a hedged round trip got a failing
// status, worth the next hedge at once.
var errHedgeStatus = errors.New("resiliencehttp: failing status")

// roundTrip sends r, the request of one attempt, through next: hedged,
// with WithHedge, when the call may be sent more than once.
func (c *call) roundTrip(ctx context.Context, r *http.Request) (*http.Response, error) {
	t := c.t
	if t.hedge == nil || !c.replay {
		return t.next.RoundTrip(r)
	}
	var sent atomic.Bool // r went to next
	resp, err := resilience.Do(ctx, t.hedge, func(ctx context.Context) (*http.Response, error) {
		req, err := c.hedgeRequest(ctx, r, &sent)
		if err != nil {
			return nil, err
		}
		resp, err := t.next.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		if resp == nil {
			return nil, errors.New("resiliencehttp: next RoundTripper returned neither a response nor an error")
		}
		keepFor(ctx, resp)
		if t.failed(resp) {
			return resp, errHedgeStatus
		}
		return resp, nil
	})
	if errors.Is(err, errHedgeStatus) {
		return resp, nil // every hedge failed: the attempt classifies the last
	}
	return resp, err
}

// hedgeRequest returns the request of one hedge of r: r itself with the
// hedge's ctx for the first, and a clone with a fresh body for each other.
func (c *call) hedgeRequest(ctx context.Context, r *http.Request, sent *atomic.Bool) (*http.Request, error) {
	if sent.CompareAndSwap(false, true) {
		return r.WithContext(ctx), nil
	}
	return c.clone(ctx)
}

// keepFor keeps ctx, a hedge's, while resp's body is read: the hedger ends
// a hedge's ctx once its round trip returns, and the winner's body is read
// after.
func keepFor(ctx context.Context, resp *http.Response) {
	if resp.Body == nil || resp.Body == http.NoBody {
		return
	}
	k := keep.Find(ctx)
	if k == nil || !k.Keep() {
		return
	}
	b := &keptBody{rc: resp.Body, k: k}
	if w, ok := resp.Body.(io.Writer); ok { // a 101 Switching Protocols
		resp.Body = &keptReadWriter{b, w}
	} else {
		resp.Body = b
	}
}

// discardResponse drains and closes the response of a hedge that lost.
func (t *Transport) discardResponse(v any) {
	if resp, ok := v.(*http.Response); ok && resp != nil {
		t.drainClose(resp)
	}
}
