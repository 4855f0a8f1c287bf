package bulkhead_test

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/resilience-go/resilience/bulkhead"
)

// FuzzBulkhead drives a bulkhead with the arrivals, completions, deadlines
// and sleeps the input spells out, and checks its invariants after each:
// never more running than its slots or waiting than its queue, waiters start
// in the order they came, refusals never go down, and every call ends.
func FuzzBulkhead(f *testing.F) {
	f.Add([]byte{2, 1, 3, 0, 0, 0, 0, 1, 2, 9, 17, 0, 25})
	f.Add([]byte{1, 2, 0, 0, 0, 0, 0, 3, 3, 3, 1, 1, 1})
	f.Add([]byte{3, 0, 0, 8, 16, 24, 32, 40, 2, 10, 18})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		synctest.Test(t, func(t *testing.T) { fuzzBulkhead(t, data) })
	})
}

func fuzzBulkhead(t *testing.T, data []byte) {
	max, queue := int(data[0]%3)+1, int(data[1]%4)
	b := bulkhead.New(max, bulkhead.WithMaxWait(time.Second), bulkhead.WithMaxQueue(queue))
	var (
		mu       sync.Mutex
		started  []int // call ids in the order their op started
		releases []chan struct{}
		wg       sync.WaitGroup
		arrived  []int // ids of calls that had to wait, in arrival order
	)
	var lastRejected int64
	for _, c := range data[2:] {
		switch c % 4 {
		case 0, 1: // a call arrives, with or without a deadline
			id := len(releases)
			release := make(chan struct{})
			releases = append(releases, release)
			waits := b.Metrics().InFlight >= int64(max) || b.Metrics().Waiting > 0
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if c%4 == 1 {
				ctx, cancel = context.WithTimeout(ctx, time.Duration(c/4)*37*time.Millisecond)
			}
			wg.Go(func() {
				defer cancel()
				_ = b.Do(ctx, func(context.Context) error {
					mu.Lock()
					started = append(started, id)
					mu.Unlock()
					<-release
					return nil
				})
			})
			synctest.Wait()
			if waits {
				arrived = append(arrived, id)
			}
		case 2: // a running call finishes
			mu.Lock()
			for _, id := range started {
				select {
				case <-releases[id]:
					continue
				default:
				}
				close(releases[id])
				break
			}
			mu.Unlock()
			synctest.Wait()
		case 3:
			time.Sleep(time.Duration(c/4) * 50 * time.Millisecond)
			synctest.Wait()
		}
		m := b.Metrics()
		if m.InFlight > int64(max) || m.Waiting > int64(queue) || m.Rejected < lastRejected || m.InFlight < 0 || m.Waiting < 0 {
			t.Fatalf("max %d, queue %d: %+v after %+v", max, queue, m, lastRejected)
		}
		lastRejected = m.Rejected
	}
	// Finish the running calls one at a time, so that each hands its slot
	// to one waiter and the order the waiters start in is the order the
	// slots were handed.
	for {
		mu.Lock()
		next := -1
		for _, id := range started {
			select {
			case <-releases[id]:
				continue
			default:
			}
			next = id
			break
		}
		mu.Unlock()
		if next < 0 {
			break
		}
		close(releases[next])
		synctest.Wait()
	}
	wg.Wait()
	if m := b.Metrics(); m.InFlight != 0 || m.Waiting != 0 {
		t.Fatalf("every call ended, yet %+v", m)
	}
	// The calls that waited and then ran started in the order they came.
	pos := make(map[int]int, len(started))
	for i, id := range started {
		pos[id] = i
	}
	last := -1
	for _, id := range arrived {
		if p, ok := pos[id]; ok {
			if p < last {
				t.Fatalf("waiter %d started out of order: %v, arrivals %v", id, started, arrived)
			}
			last = p
		}
	}
}
