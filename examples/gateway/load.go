package main

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// A client sends GETs at a steady rate, whatever the answers: each to a
// path drawn at random, half /users/<id> and half /orders/<id>, with ids
// 1 to 8, and sends each to every gateway at once.
type client struct {
	name string
	rate float64 // requests a second
}

// clients are the load: three polite clients well within the rate limit,
// and a greedy one far beyond it.
var clients = []client{
	{"alice", 20},
	{"bob", 20},
	{"carol", 20},
	{"greedy", 150},
}

// maxPending bounds the requests a client has waiting on one gateway;
// past it, the client skips its turn.
const maxPending = 64

// load drives the clients against the gateways at urls until ctx is done,
// and returns when their last requests have been answered. The requests
// themselves run under base, so that those sent before ctx ended finish;
// load returns the number of requests that got no answer.
func load(ctx, base context.Context, hc *http.Client, urls []string, seed uint64) int64 {
	var (
		wg         sync.WaitGroup
		unanswered atomic.Int64
	)
	for _, c := range clients {
		rng := rand.New(rand.NewPCG(seed, hashOf(c.name)))
		pending := make([]chan struct{}, len(urls))
		for i := range pending {
			pending[i] = make(chan struct{}, maxPending)
		}
		wg.Go(func() {
			tick := time.NewTicker(time.Duration(float64(time.Second) / c.rate))
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				path := "/users/"
				if rng.IntN(2) == 1 {
					path = "/orders/"
				}
				path += strconv.Itoa(1 + rng.IntN(8))
				for i, url := range urls {
					select {
					case pending[i] <- struct{}{}:
					default:
						continue // too many waiting already
					}
					wg.Go(func() {
						defer func() { <-pending[i] }()
						if !get(base, hc, url+path, c.name) {
							unanswered.Add(1)
						}
					})
				}
			}
		})
	}
	wg.Wait()
	return unanswered.Load()
}

// get sends a GET to url as client, reads the answer, and reports whether
// it had one.
func get(ctx context.Context, hc *http.Client, url, client string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	req.Header.Set("X-Api-Key", client)
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return err == nil
}
