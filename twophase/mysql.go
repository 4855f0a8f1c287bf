package twophase

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	"github.com/resilience-go/resilience/internal/sqlstore"
)

// MySQL returns the participant named name that is the MySQL or MariaDB
// database db, through github.com/go-sql-driver/mysql. Its branches are
// XA transactions, which survive a disconnection and a restart on MariaDB
// 10.5.2 or later, and on MySQL 8.0.29 or later with xa_detach_on_prepare
// ON (its default), so that any connection can end them. Tables must be
// InnoDB. name must be 1 to 32 letters, digits, '_' or '-', and the same
// in every process; MySQL panics otherwise.
func MySQL(name string, db *sql.DB) *Participant {
	return newParticipant("MySQL", name, db, xaProtocol)
}

var xaProtocol = &protocol{
	name:  "MySQL",
	store: sqlstore.MySQL,
	decisionTable: func(table string) string {
		return "CREATE TABLE IF NOT EXISTS " + table + " (gid VARCHAR(64) NOT NULL PRIMARY KEY, outcome SMALLINT NOT NULL, decided_at BIGINT NOT NULL) ENGINE=InnoDB"
	},
	check: func(ctx context.Context, db *sql.DB) error {
		var version string
		if err := db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
			return err
		}
		server, ok := sqlstore.MySQL.Recognize(version)
		if !ok {
			return fmt.Errorf("not a MySQL or MariaDB server: VERSION() is %q", version)
		}
		return checkXA(server, func() (bool, error) {
			var on bool
			err := db.QueryRowContext(ctx, "SELECT @@xa_detach_on_prepare").Scan(&on)
			return on, err
		})
	},
	begin: func(ctx context.Context, conn *sql.Conn, x xid) error {
		return exec(ctx, conn, "XA START "+x.mysqlXID())
	},
	prepare: func(ctx context.Context, conn *sql.Conn, x xid) error {
		return exec(ctx, conn, "XA END "+x.mysqlXID(), "XA PREPARE "+x.mysqlXID())
	},
	rollbackActive: func(ctx context.Context, conn *sql.Conn, x xid) error {
		// XA END fails on a branch ended already, which XA ROLLBACK takes.
		exec(ctx, conn, "XA END "+x.mysqlXID()) //nolint:errcheck // see above
		return exec(ctx, conn, "XA ROLLBACK "+x.mysqlXID())
	},
	commitPrepared: func(ctx context.Context, q execer, x xid) error {
		return exec(ctx, q, "XA COMMIT "+x.mysqlXID())
	},
	rollbackPrepared: func(ctx context.Context, q execer, x xid) error {
		return exec(ctx, q, "XA ROLLBACK "+x.mysqlXID())
	},
	// XA RECOVER lists the branches of the whole server, whatever their
	// database: those of one participant are told by their bqual, its name.
	list: func(ctx context.Context, db *sql.DB) ([]xid, error) {
		rows, err := db.QueryContext(ctx, "XA RECOVER")
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var out []xid
		for rows.Next() {
			var format, glen, blen int
			var data []byte
			if err := rows.Scan(&format, &glen, &blen, &data); err != nil {
				return nil, err
			}
			if format != 1 || glen < 0 || blen < 0 || glen+blen > len(data) {
				continue
			}
			x := xid{string(data[:glen]), string(data[glen : glen+blen])}
			if _, _, ok := parseGTRID(x.gtrid); ok && nameRE.MatchString(x.bqual) {
				out = append(out, x)
			}
		}
		return out, rows.Err()
	},
	// Error 1397 (XAE04): XAER_NOTA: Unknown XID.
	gone: func(err error) bool {
		return strings.Contains(err.Error(), "XAER_NOTA") || strings.Contains(err.Error(), "Error 1397")
	},
}

// checkXA returns an error unless server ("MariaDB 10.11.19", "MySQL
// 8.0.36") keeps prepared XA branches through a disconnection, and lets
// another connection end them: MariaDB 10.5.2 or later (MDEV-742), MySQL
// 8.0.29 or later with xa_detach_on_prepare ON, which detached asks.
func checkXA(server string, detached func() (bool, error)) error {
	kind, version, _ := strings.Cut(server, " ")
	v := versionOf(version)
	switch kind {
	case "MariaDB":
		if !atLeast(v, 10, 5, 2) {
			return fmt.Errorf("%s loses prepared XA transactions when their connection ends: upgrade to MariaDB 10.5.2 or later", server)
		}
		return nil
	default:
		if !atLeast(v, 8, 0, 29) {
			return fmt.Errorf("%s keeps a prepared XA transaction bound to its connection: upgrade to MySQL 8.0.29 or later, with xa_detach_on_prepare ON", server)
		}
		on, err := detached()
		if err != nil {
			return fmt.Errorf("read xa_detach_on_prepare: %w", err)
		}
		if !on {
			return fmt.Errorf("%s has xa_detach_on_prepare OFF, which keeps a prepared XA transaction bound to its connection: SET GLOBAL xa_detach_on_prepare = ON", server)
		}
		return nil
	}
}

// versionOf reads "10.11.19" as [10 11 19].
func versionOf(s string) []int {
	var v []int
	for f := range strings.SplitSeq(s, ".") {
		n, err := strconv.Atoi(f)
		if err != nil {
			break
		}
		v = append(v, n)
	}
	return v
}

// atLeast reports whether version v is want or later.
func atLeast(v []int, want ...int) bool {
	for i, w := range want {
		n := 0
		if i < len(v) {
			n = v[i]
		}
		if n != w {
			return n > w
		}
	}
	return true
}
