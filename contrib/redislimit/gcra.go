package redislimit

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// gcra is the token bucket, run by Redis as one script so that reading and
// writing a bucket is atomic however many processes share it. As in package
// ratelimit, a bucket is one number, its theoretical arrival time (tat): the
// time at which it would be full again. A call at now takes a token if,
// after it, the bucket would be full again within burst intervals:
// tat' = max(tat, now) + interval and tat' - now <= burst·interval.
//
// Times are the Redis server's (TIME), never the callers', in microseconds
// since 2023-11-14 22:13:20 UTC: kept that small, a Lua number (a float64)
// holds them to a small fraction of a microsecond (1/64 until 2028, 1/32
// until 2032, and so on), ample for an interval of 1µs or more. tat is
// stored with %.17g, which a float64 survives exactly. A key whose bucket is
// full holds nothing worth keeping, so each write sets the key to expire
// when its bucket is full again (a millisecond later, since expiry is in
// whole milliseconds); a missing key is a full bucket. The key holds tat
// alone: the interval and burst are the caller's, so every caller of a key
// must pass the same.
//
// The script writes after reading the clock, which Redis allows from
// version 5 on, where scripts are replicated by their effects; Redis 3.2 to
// 4 refuse the write ("Write commands not allowed after non deterministic
// commands").
//
// KEYS[1] is the bucket. ARGV[1] is the interval in microseconds, a float;
// ARGV[2] the burst; ARGV[3] how long in microseconds the caller may wait
// for a token, or -1 to give back a token taken but not used, which ARGV[4]
// names by the tat its take set. The reply is {taken, wait, now, tat}:
// taken is 1 when a token was taken (or given back) and 0 when none is due
// within the wait allowed (or the token is not given back); wait is how
// long from now, in whole microseconds rounded up, until the token is due
// (for a refusal, the token the caller would have had); now is the server's
// time; tat, for a token taken, the bucket's tat after it.
//
// A token is given back only while it is not yet due (one that is due may
// have been used) and no token was taken after it (a later token keeps its
// time, so that giving this one back would let a call in ahead of it): then
// the bucket holds what it would have held without it.
var gcra = redis.NewScript(`
local t = redis.call('TIME')
local now = (tonumber(t[1]) - 1700000000) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now) or now
if tat < now then tat = now end
local maxwait = tonumber(ARGV[3])
if maxwait < 0 then
	local mine = tonumber(ARGV[4])
	if tonumber(redis.call('GET', KEYS[1]) or 'none') ~= mine or now >= mine - interval * tonumber(ARGV[2]) then
		return {0, 0, now, ''}
	end
	tat = mine - interval
	if tat > now then
		redis.call('SET', KEYS[1], string.format('%.17g', tat), 'PX', math.min(math.ceil((tat - now) / 1000) + 1, 1e12))
	else
		redis.call('DEL', KEYS[1])
	end
	return {1, 0, now, ''}
end
local nxt = tat + interval
local wait = nxt - now - interval * tonumber(ARGV[2])
if wait > maxwait then
	return {0, math.ceil(wait), now, ''}
end
local stored = string.format('%.17g', nxt)
redis.call('SET', KEYS[1], stored, 'PX', math.min(math.ceil((nxt - now) / 1000) + 1, 1e12))
if wait < 0 then wait = 0 end
return {1, math.ceil(wait), now, stored}
`)

// giveBackArg is ARGV[3] for giving a token back.
const giveBackArg = -1

// reply is what the script answered.
type reply struct {
	taken bool
	wait  time.Duration
	now   int64  // microseconds of the server's clock, for tests
	tat   string // of a token taken: names it to give it back
}

// bucketArgs formats a rate's interval and a burst for the script.
func bucketArgs(interval float64, burst int) (string, string) {
	return strconv.FormatFloat(interval, 'g', -1, 64), strconv.Itoa(burst)
}

// eval runs the script on the bucket keys[0], with arg as ARGV[3] and, to
// give a token back, its tat as ARGV[4]. It uses EVALSHA, and EVAL when
// Redis does not have the script yet.
func (s *store) eval(ctx context.Context, keys []string, arg int64, tat string) (reply, error) {
	r, err := gcra.Run(ctx, s.client, keys, s.interval, s.burst, arg, tat).Slice()
	if err != nil {
		return reply{}, err
	}
	if len(r) != 4 {
		return reply{}, fmt.Errorf("the script answered %v, want 4 values", r)
	}
	taken, ok1 := r[0].(int64)
	wait, ok2 := r[1].(int64)
	now, ok3 := r[2].(int64)
	next, ok4 := r[3].(string)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return reply{}, fmt.Errorf("the script answered %v, want 3 integers and a string", r)
	}
	return reply{taken: taken == 1, wait: time.Duration(wait) * time.Microsecond, now: now, tat: next}, nil
}
