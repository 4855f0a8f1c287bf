package twophase

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/internal/sqlstore"
)

// Every field of every database's protocol is set.
func TestProtocolsComplete(t *testing.T) {
	for _, p := range []*protocol{pgProtocol, xaProtocol} {
		assert.Empty(t, sqlstore.Unset(p), p.name)
	}
}

// The servers that keep prepared XA branches through a disconnection, and
// let another connection end them, pass; the others get an error that
// says what to do.
func TestCheckXA(t *testing.T) {
	tests := []struct {
		server   string
		detached bool
		want     string
	}{
		{"MariaDB 10.11.19", false, ""},
		{"MariaDB 10.5.2", false, ""},
		{"MariaDB 11.4.0", false, ""},
		{"MariaDB 10.5.1", false, "upgrade to MariaDB 10.5.2 or later"},
		{"MariaDB 10.4.30", false, "upgrade to MariaDB 10.5.2 or later"},
		{"MySQL 8.0.29", true, ""},
		{"MySQL 8.4.0", true, ""},
		{"MySQL 9.1.0", true, ""},
		{"MySQL 8.0.29", false, "xa_detach_on_prepare OFF"},
		{"MySQL 8.0.28", true, "upgrade to MySQL 8.0.29 or later"},
		{"MySQL 5.7.44", true, "upgrade to MySQL 8.0.29 or later"},
	}
	for _, tt := range tests {
		err := checkXA(tt.server, func() (bool, error) { return tt.detached, nil })
		if tt.want == "" {
			assert.NoError(t, err, tt.server)
		} else {
			assert.ErrorContains(t, err, tt.want, "%s detached=%v", tt.server, tt.detached)
		}
	}
}

// max_prepared_transactions = 0, PostgreSQL's default, is refused with
// how to set it.
func TestCheckMaxPrepared(t *testing.T) {
	assert.NoError(t, checkMaxPrepared("64"))
	err := checkMaxPrepared("0")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "max_prepared_transactions is 0")
	assert.Contains(t, err.Error(), "ALTER SYSTEM SET max_prepared_transactions = 64")
	assert.Contains(t, err.Error(), "restart the server")
}

// IDs fit their databases: a transaction's at most 64 bytes (MySQL's
// gtrid), a PostgreSQL branch's under 200; and they read back.
func TestIDs(t *testing.T) {
	id := strings.Repeat("c", 32)
	began := time.UnixMilli(4102444800000) // 2100-01-01
	gtrid := newGTRID(id, began, ^uint64(0))
	assert.LessOrEqual(t, len(gtrid), 64, gtrid)
	x := xid{gtrid, strings.Repeat("p", 32)}
	assert.Less(t, len(x.pgGID()), 200)
	coordinator, at, ok := parseGTRID(gtrid)
	require.True(t, ok)
	assert.Equal(t, id, coordinator)
	assert.True(t, at.Equal(began))
	back, ok := parsePGGID(x.pgGID())
	require.True(t, ok)
	assert.Equal(t, x, back)
	for _, bad := range []string{"", "tp.", "tp.a.b", "tp.a.zz.0123456789abcdeg", "xx.a.1.0123456789abcdef", "tp.a b.1.0123456789abcdef", "tp.a.-1.0123456789abcdef"} {
		_, _, ok := parseGTRID(bad)
		assert.False(t, ok, bad)
	}
}

// Whatever a prepared-transaction list holds, reading it never panics, and
// what reads as an ID of this package is one that newGTRID and pgGID make,
// byte for byte.
func FuzzParseGID(f *testing.F) {
	f.Add("tp.node-1.mhx0k2ts.9f2c41d07a3be815.ledger")
	f.Add("tp.a.0.0000000000000000.b")
	f.Add("tp..1.0000000000000000.x")
	f.Add("other")
	f.Fuzz(func(t *testing.T, gid string) {
		x, ok := parsePGGID(gid)
		if !ok {
			return
		}
		coordinator, began, ok := parseGTRID(x.gtrid)
		require.True(t, ok, gid)
		r, err := strconv.ParseUint(x.gtrid[len(x.gtrid)-16:], 16, 64)
		require.NoError(t, err, gid)
		assert.Equal(t, gid, xid{newGTRID(coordinator, began, r), x.bqual}.pgGID())
		assert.LessOrEqual(t, len(x.gtrid), 64)
	})
}
