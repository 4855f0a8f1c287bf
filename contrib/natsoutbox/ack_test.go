package natsoutbox

import (
	"encoding/json"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var ackSeeds = []string{
	`{"stream":"ORDERS","seq":1}`,
	`{"stream":"ORDERS", "seq":1}`,
	`{"stream":"ORDERS","domain":"hub","seq":18446744073709551615,"duplicate":true}`,
	`{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"},"stream":"ORDERS","seq":0}`,
	`{"stream":"ORDERS","seq":1,"error":{"code":400,"err_code":10060,"description":"expected stream does not match"}}`,
	`{"stream":"ORDERS","seq":1,"Error":{"code":400}}`,
	`{"stream":"ORDERS","seq":1,"STREAM":""}`,
	`{"stream":"ORDERS","seq":1,"\u0065rror":{"code":400}}`,
	`{"stream":"","seq":1}`,
	`{"stream":"ORDERS","seq":"one"}`,
	`{"stream":"ORDERS","seq":1`,
	`{"stream":"ORDERS","seq":1}{}`,
	`{"stream":"ORDERS","seq":1,"val":"error"}`,
	`{"stream":1}`,
	`{"stream":null}`,
	``,
	`null`,
}

// The fast path accepts only what the decoder accepts.
func FuzzIsPubAck(f *testing.F) {
	for _, s := range ackSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !isPubAck(data) {
			return
		}
		var resp pubAckResponse
		require.NoError(t, json.Unmarshal(data, &resp), "%s", data)
		assert.Nil(t, resp.Error, "%s", data)
		assert.NotEmpty(t, resp.Stream, "%s", data)
	})
}

func TestAckError(t *testing.T) {
	tests := []struct {
		data    string
		fast    bool
		wantErr error // nil: accepted
	}{
		{`{"stream":"ORDERS","seq":1}`, true, nil},
		{`{"stream":"ORDERS", "seq":1}`, true, nil}, // as the server sends it
		{`{"stream":"ORDERS","domain":"hub","seq":2,"duplicate":true}`, true, nil},
		{`{"stream":"ORDERS","seq":1,"val":"error"}`, false, nil},
		{`{"seq":1,"stream":"ORDERS"}`, false, nil},
		{`{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"},"stream":"ORDERS","seq":0}`, false,
			&jetstream.APIError{Code: 503, ErrorCode: 10077}},
		{`{"stream":"ORDERS","seq":1,"Error":{"code":400,"err_code":10060}}`, false, &jetstream.APIError{ErrorCode: 10060}},
		{`{"stream":"ORDERS","seq":1,"STREAM":""}`, false, jetstream.ErrInvalidJSAck},
		{`{"stream":"","seq":1}`, false, jetstream.ErrInvalidJSAck},
		{`{"stream":"ORDERS","seq":1`, false, jetstream.ErrInvalidJSAck},
		{`{"stream":1}`, false, jetstream.ErrInvalidJSAck},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.fast, isPubAck([]byte(tt.data)), "fast path for %s", tt.data)
		err := ackError(&nats.Msg{Data: []byte(tt.data)})
		if tt.wantErr == nil {
			assert.NoError(t, err, tt.data)
		} else {
			assert.ErrorIs(t, err, tt.wantErr, tt.data)
		}
	}

	noResponders := &nats.Msg{Header: nats.Header{"Status": {"503"}}}
	assert.ErrorIs(t, ackError(noResponders), jetstream.ErrNoStreamResponse)
	timeout := &nats.Msg{Header: nats.Header{"Status": {"408"}, "Description": {"Request Timeout"}}}
	assert.EqualError(t, ackError(timeout), "status 408 Request Timeout", "Publish wraps it with the prefix")
}

func TestPubAckAllocatesNothing(t *testing.T) {
	ack := &nats.Msg{Data: []byte(`{"stream":"ORDERS", "seq":1234567}`)}
	require.NoError(t, ackError(ack))
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = ackError(ack) }), "%s", ack.Data)
}
