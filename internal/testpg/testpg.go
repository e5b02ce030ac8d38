// Package testpg starts PostgreSQL servers of a test's own: a primary and
// a streaming replica that replays the primary's commits no sooner than a
// chosen delay after them, so that a read from the replica right after a
// write is certain to miss it. Only tests import it.
//
// The server binaries are those in GORMFLIGHT_PG_BIN, or else the newest
// of /usr/lib/postgresql/*/bin (PostgreSQL 15 on the development machine).
// PostgreSQL refuses to run as root, so a root test process runs them as
// the postgres OS user (runuser -u postgres --); any other user runs them
// as itself.
package testpg

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gormflight/gormflight/internal/testdb"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

// startTimeout bounds each server command (initdb, pg_ctl, pg_basebackup)
// and the waits for a server to answer: long enough for a loaded 2-core
// machine, a guard against a hung test rather than a timing assertion.
const startTimeout = 60 * time.Second

// Pair is a primary and its streaming replica, each serving the database
// test on a loopback port of its own, trusted for user postgres.
type Pair struct {
	Primary string // DSN of the primary's database test
	Replica string // DSN of the replica's database test, read-only

	primary, replica *sql.DB // for Lag and CaughtUp
}

// Lag is how far the replica is behind the primary.
type Lag struct {
	// Bytes is the WAL the primary has written that the replica has not
	// replayed yet; 0 when the replica has caught up.
	Bytes int64
	// Time is now() - pg_last_xact_replay_timestamp() on the replica while
	// Bytes > 0, 0 once it has caught up: how long ago the last
	// transaction the replica did replay committed on the primary. Under
	// steady writes it is the replica's delay; after an idle spell it also
	// counts the idle time before the first write not yet replayed.
	Time time.Duration
}

// StartReplicated starts a primary with the database test, makes a
// replica of it with pg_basebackup -R -X stream whose
// recovery_min_apply_delay is applyDelay, starts the replica and waits
// until it accepts read-only connections. Both stop (pg_ctl stop -m
// immediate) and their directory is removed when t ends. Without the
// server binaries t is skipped, or fails where services are required.
func StartReplicated(t testing.TB, applyDelay time.Duration) *Pair {
	t.Helper()
	if _, err := os.Stat(filepath.Join(binDir(), "pg_ctl")); err != nil {
		testdb.Unavailable(t, "PostgreSQL server binaries", err)
	}
	s := newServers(t)
	ports := freePorts(t, 2)
	pdata, rdata := filepath.Join(s.dir, "primary"), filepath.Join(s.dir, "replica")
	s.run("initdb", "-D", pdata, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	s.configure(pdata, ports[0])
	s.start(pdata)
	pr := &Pair{Primary: dsn(ports[0], "test"), Replica: dsn(ports[1], "test")}
	admin := s.open(dsn(ports[0], "postgres"))
	if _, err := admin.Exec("CREATE DATABASE test"); err != nil {
		t.Fatalf("CREATE DATABASE test: %v\n%s", err, s.logs())
	}
	_ = admin.Close()
	// -c fast: the backup starts at once instead of after a spread
	// checkpoint, which takes minutes.
	s.run("pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(ports[0]), "-U", "postgres",
		"-D", rdata, "-R", "-X", "stream", "-c", "fast", "--no-sync")
	s.appendConf(rdata, "postgresql.conf", fmt.Sprintf("port = %d\nhot_standby = on\nrecovery_min_apply_delay = '%dms'\n",
		ports[1], applyDelay.Milliseconds()))
	s.start(rdata)
	pr.primary, pr.replica = s.open(pr.Primary), s.open(pr.Replica)
	s.awaitStandby(pr.replica)
	return pr
}

// Lag reports how far the replica is behind the primary now.
func (p *Pair) Lag(ctx context.Context) (Lag, error) {
	var lsn string
	if err := p.primary.QueryRowContext(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
		return Lag{}, fmt.Errorf("primary's WAL position: %w", err)
	}
	var lag Lag
	var micros sql.NullInt64
	err := p.replica.QueryRowContext(ctx, `
SELECT greatest(pg_wal_lsn_diff($1::pg_lsn, pg_last_wal_replay_lsn()), 0)::bigint,
       (extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1e6)::bigint`, lsn).Scan(&lag.Bytes, &micros)
	if err != nil {
		return Lag{}, fmt.Errorf("replica's replay position: %w", err)
	}
	if lag.Bytes > 0 && micros.Valid {
		lag.Time = time.Duration(micros.Int64) * time.Microsecond
	}
	return lag, nil
}

// CaughtUp waits until the replica has replayed everything the primary had
// written when it was called, or ctx ends.
func (p *Pair) CaughtUp(ctx context.Context) error {
	var lsn string
	if err := p.primary.QueryRowContext(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
		return fmt.Errorf("primary's WAL position: %w", err)
	}
	for {
		var done bool
		if err := p.replica.QueryRowContext(ctx, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", lsn).Scan(&done); err != nil {
			return fmt.Errorf("replica's replay position: %w", err)
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the replica has not replayed %s: %w", lsn, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// PauseReplay stops the replica replaying the primary's WAL until t ends:
// whatever the primary commits from now on, however long the test takes,
// the replica does not have it. The replica stops before its next record
// (PostgreSQL checks for a pause before each one it applies, after waiting
// out recovery_min_apply_delay too).
func (p *Pair) PauseReplay(t testing.TB) {
	t.Helper()
	if _, err := p.replica.Exec("SELECT pg_wal_replay_pause()"); err != nil {
		t.Fatalf("pg_wal_replay_pause: %v", err)
	}
	t.Cleanup(func() {
		if _, err := p.replica.Exec("SELECT pg_wal_replay_resume()"); err != nil {
			t.Errorf("pg_wal_replay_resume: %v", err)
		}
	})
}

// binDir is where the PostgreSQL server binaries are: GORMFLIGHT_PG_BIN,
// or else the newest major version Debian's packages installed, so that a
// CI machine that installs another version than 15 still finds one.
func binDir() string {
	if d := os.Getenv("GORMFLIGHT_PG_BIN"); d != "" {
		return d
	}
	dir, newest := "/usr/lib/postgresql/15/bin", 0
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	for _, f := range found {
		bin := filepath.Dir(f)
		major, _, _ := strings.Cut(filepath.Base(filepath.Dir(bin)), ".")
		if v, err := strconv.Atoi(major); err == nil && v > newest {
			dir, newest = bin, v
		}
	}
	return dir
}

// dsn is the DSN of database db on the loopback port.
func dsn(port int, db string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=%s sslmode=disable", port, db)
}

// freePorts returns n loopback ports that were free a moment ago, all
// different: each listener stays open until all are chosen.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports
}
