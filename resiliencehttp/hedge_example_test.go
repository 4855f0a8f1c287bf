package resiliencehttp_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/resilience-go/resilience/hedge"
	"github.com/resilience-go/resilience/resiliencehttp"
)

// A GET whose response is slow is sent again after 50ms; the second
// answers first, and the first is cancelled.
func ExampleWithHedge() {
	var hits atomic.Int32
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			<-r.Context().Done() // a replica stuck in a pause
			return
		}
		fmt.Fprint(w, "from the second replica")
	}))
	defer s.Close()

	client := &http.Client{Transport: resiliencehttp.NewTransport(nil,
		resiliencehttp.WithHedge(hedge.WithDelay(50*time.Millisecond), hedge.WithMaxExtraLoad(1)))}
	resp, err := client.Get(s.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(body))
	fmt.Println("requests:", hits.Load())
	// Output:
	// 200 from the second replica
	// requests: 2
}
