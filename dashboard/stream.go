package dashboard

import (
	"bytes"
	"net/http"
	"time"
)

// pushEvery is how often the event stream pushes the state.
const pushEvery = time.Second

// writeTimeout is how long a push to a client may take before the stream
// ends: a client that does not read holds it no longer.
const writeTimeout = 10 * time.Second

// serveEvents serves the event stream: each second, and at once after an
// operator's action, the sections of the page whose HTML changed, each as
// an event named by its section, and a "tick" event with the time. It ends
// when the client goes away, or when the dashboard is closed.
func (d *Dashboard) serveEvents(w http.ResponseWriter, r *http.Request) {
	select {
	case <-d.done:
		http.Error(w, "dashboard: closed", http.StatusServiceUnavailable)
		return
	default:
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Accel-Buffering", "no") // a proxy in front must not hold it back
	if r.Method == http.MethodHead {
		return
	}
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	v := view{Actions: d.allowed(r)}
	var (
		sent [len(sections)]string // the HTML last sent of each section
		buf  bytes.Buffer
		out  bytes.Buffer
	)
	out.WriteString("retry: 2000\n\n") // reconnect after 2s
	t := time.NewTicker(pushEvery)
	defer t.Stop()
	for {
		acted := d.woken() // before reading the state, so as to miss no action
		now := time.Now()
		v.Snapshot = d.snapshot(r.Context(), now)
		for i, name := range sections {
			if !d.shows(name) {
				continue
			}
			buf.Reset()
			if err := page.ExecuteTemplate(&buf, name, v); err != nil {
				return // a bug, which the tests catch
			}
			if buf.String() == sent[i] {
				continue
			}
			sent[i] = buf.String()
			writeEvent(&out, name, buf.Bytes())
		}
		writeEvent(&out, "tick", now.AppendFormat(nil, time.RFC3339))
		// A server's WriteTimeout would cut the stream at a time set for
		// requests that end: a client gets as long as a push may take.
		rc.SetWriteDeadline(now.Add(writeTimeout)) //nolint:errcheck // a writer without deadlines has no timeout to lift
		if _, err := out.WriteTo(w); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-d.done:
			return
		case <-acted:
		case <-t.C:
		}
	}
}

// writeEvent writes an event of the stream, named name, whose data is
// data, a line at a time. A carriage return, which ends a line of the
// stream as a line feed does, ends a line of data too, so that no text in
// data can start a field of its own.
func writeEvent(b *bytes.Buffer, name string, data []byte) {
	b.WriteString("event: " + name + "\n")
	for line := range bytes.Lines(data) {
		line = bytes.TrimSuffix(line, []byte("\n"))
		for part := range bytes.SplitSeq(line, []byte("\r")) {
			b.WriteString("data: ")
			b.Write(part)
			b.WriteByte('\n')
		}
	}
	b.WriteByte('\n')
}
