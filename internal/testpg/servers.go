package testpg

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// servers runs the server binaries for one test, in one directory owned by
// the user they run as, and stops every server it started when the test
// ends.
type servers struct {
	t   testing.TB
	dir string
	// asPostgres runs the binaries through runuser -u postgres: the test
	// process is root, which PostgreSQL refuses.
	asPostgres bool

	mu      sync.Mutex
	started []string  // data directories, in start order
	dbs     []*sql.DB // closed before the servers stop
}

// newServers makes the directory, outside t.TempDir, whose parents are
// private to root, so that the postgres user can reach it.
func newServers(t testing.TB) *servers {
	t.Helper()
	dir, err := os.MkdirTemp("", "gormflight-pg-")
	if err != nil {
		t.Fatal(err)
	}
	s := &servers{t: t, dir: dir, asPostgres: os.Geteuid() == 0}
	t.Cleanup(s.stop)
	if s.asPostgres {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("PostgreSQL runs as the postgres user when the tests run as root: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// command is the binary name of binDir with args, as the servers' user.
func (s *servers) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	bin := filepath.Join(binDir(), name)
	if s.asPostgres {
		return exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", bin}, args...)...)
	}
	return exec.CommandContext(ctx, bin, args...)
}

// run runs a server binary to its end, failing the test if it fails.
func (s *servers) run(name string, args ...string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if out, err := s.command(ctx, name, args...).CombinedOutput(); err != nil {
		s.t.Fatalf("%s %s: %v\n%s\n%s", name, strings.Join(args, " "), err, out, s.logs())
	}
}

// configure makes the fresh data directory data a primary on port: TCP on
// the loopback only, its socket in the test's directory, WAL for a
// replica, everything trusted on the loopback (replication too), and the
// settings that make a throwaway server fast (small shared_buffers, no
// fsync).
func (s *servers) configure(data string, port int) {
	s.t.Helper()
	s.appendConf(data, "postgresql.conf", fmt.Sprintf(`
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
wal_level = replica
max_wal_senders = 4
shared_buffers = 16MB
fsync = off
full_page_writes = off
`, port, s.dir))
	hba := "local all all trust\nhost all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n"
	if err := os.WriteFile(filepath.Join(data, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

// appendConf appends settings to a configuration file of data, where they
// override what the file said before.
func (s *servers) appendConf(data, file, settings string) {
	s.t.Helper()
	f, err := os.OpenFile(filepath.Join(data, file), os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteString(settings)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		s.t.Fatalf("configure %s: %v", data, err)
	}
}

// start starts the server of data and waits until it is ready (a standby:
// until it accepts read-only connections), its log next to data.
func (s *servers) start(data string) {
	s.t.Helper()
	s.mu.Lock()
	s.started = append(s.started, data)
	s.mu.Unlock()
	s.run("pg_ctl", "-D", data, "-l", data+".log", "-w", "-t", strconv.Itoa(int(startTimeout.Seconds())), "start")
}

// open opens a database/sql handle on dsn, closed before the servers stop.
func (s *servers) open(dsn string) *sql.DB {
	s.t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		s.t.Fatal(err)
	}
	s.mu.Lock()
	s.dbs = append(s.dbs, db)
	s.mu.Unlock()
	return db
}

// errNotStandby is awaitStandby's last error while the replica answers as
// a primary.
var errNotStandby = errors.New("the replica is not in recovery")

// awaitStandby waits until the replica answers queries, in recovery.
func (s *servers) awaitStandby(replica *sql.DB) {
	s.t.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		var recovering bool
		err := replica.QueryRow("SELECT pg_is_in_recovery()").Scan(&recovering)
		if err == nil && !recovering {
			err = errNotStandby
		}
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the replica does not answer as a standby: %v\n%s", err, s.logs())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logs returns the servers' logs, for a failure's message.
func (s *servers) logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, data := range s.started {
		out, _ := os.ReadFile(data + ".log")
		fmt.Fprintf(&b, "--- %s.log\n%s", filepath.Base(data), out)
	}
	return b.String()
}

// stop closes the handles, stops the servers, replica first, at once
// (pg_ctl stop -m immediate: nothing of theirs needs to survive) and
// removes their directory. A failed test gets their logs.
func (s *servers) stop() {
	s.mu.Lock()
	dbs, started := s.dbs, s.started
	s.mu.Unlock()
	for _, db := range dbs {
		_ = db.Close()
	}
	if s.t.Failed() {
		s.t.Logf("PostgreSQL logs:\n%s", s.logs())
	}
	for i := len(started) - 1; i >= 0; i-- {
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		out, err := s.command(ctx, "pg_ctl", "-D", started[i], "-m", "immediate", "-w", "stop").CombinedOutput()
		cancel()
		if err != nil {
			s.t.Errorf("pg_ctl stop %s: %v\n%s", started[i], err, out)
		}
	}
	if err := os.RemoveAll(s.dir); err != nil {
		s.t.Errorf("remove %s: %v", s.dir, err)
	}
}
