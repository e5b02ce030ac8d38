package dialect

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/gormflight/gormflight/internal/rowcodec"
)

// PoolSession is what an adapter knows of its pool's sessions, from when
// it was installed: the database's name, the dialect's fingerprint query
// and the pool's fingerprint. A statement on a connection whose session is
// the pool's is keyed by Scope.
type PoolSession struct {
	Database string // the database's name in keys
	Query    string // the dialect's fingerprint query (SessionSQL)
	Args     []any  // its arguments
	Scope    string // Database and the pool's fingerprint: what keys the pool's statements
}

// Open reads the pool's session on q: its database's name (unless
// database is given), the fingerprint query for names, and the
// fingerprint, which the dialect's CheckPool may refuse.
func (d *Dialect) Open(ctx context.Context, q Querier, database string, names []string) (*PoolSession, error) {
	s := &PoolSession{Database: database}
	var err error
	if s.Database == "" {
		if s.Database, err = d.Database(ctx, q); err != nil {
			return nil, err
		}
	}
	if s.Query, s.Args, err = d.SessionSQL(ctx, q, names); err != nil {
		return nil, err
	}
	fp, err := s.Fingerprint(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("gormflight: read the session for cache keys: %w", err)
	}
	if d.CheckPool != nil {
		if err := d.CheckPool(fp); err != nil {
			return nil, err
		}
	}
	s.Scope = s.ScopeOf(fp)
	return s, nil
}

// ScopeOf is what keys a statement in a session of fingerprint fp.
func (s *PoolSession) ScopeOf(fp string) string { return s.Database + "\x00" + fp }

// Fingerprint reads the session of the connection q runs its next
// statement on.
func (s *PoolSession) Fingerprint(ctx context.Context, q Querier) (string, error) {
	rows, err := q.QueryContext(ctx, s.Query, s.Args...)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var fp string
	if !rows.Next() {
		return "", fmt.Errorf("gormflight: the session's fingerprint returned no row: %w", rows.Err())
	}
	if err := rows.Scan(&fp); err != nil {
		return "", err
	}
	return fp, rows.Close()
}

// Load runs a fill's query on a connection of db, after reading that
// connection's fingerprint: if its session is not the pool's (a change the
// adapter did not see, such as a function that calls set_config), the rows
// are the caller's answer but not the key's: they are marked Local (never
// stored), and differs is true.
func (s *PoolSession) Load(ctx context.Context, db *sql.DB, query string, args []any) (ent *rowcodec.Entry, differs bool, err error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, false, err
	}
	// A panic in user code inside the query (an argument's Value method)
	// leaves database/sql holding the connection's lock, and Close would
	// then wait for ever: the panic goes on to the callers without it, and
	// the connection is lost, as database/sql loses one of its pool's.
	queried := false
	defer func() {
		if queried {
			_ = conn.Close()
		}
	}()
	fp, fpErr := s.Fingerprint(ctx, conn)
	rows, err := conn.QueryContext(ctx, query, args...)
	queried = true
	if err != nil {
		return nil, false, err
	}
	ent, err = rowcodec.Capture(rows)
	if err == nil && (fpErr != nil || s.ScopeOf(fp) != s.Scope) {
		ent.Local = true
		return ent, true, nil
	}
	return ent, false, err
}
