// Package sqlstore implements store.Store on SQL databases: SQLite through the
// pure-Go modernc driver (the default, one file in the data directory) and
// PostgreSQL through pgx. Both share one schema shape and one code path; the
// dialect only changes placeholders, locking and connection set-up.
package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/tandemdata/tandem/internal/store"
)

//go:embed migrations
var migrations embed.FS

type dialect int

const (
	sqlite dialect = iota
	postgres
)

// Store is a store.Store backed by SQLite or PostgreSQL.
type Store struct {
	dialect dialect
	write   *sql.DB // one connection for SQLite: writers queue in Go, not on busy retries
	read    *sql.DB

	mu      sync.Mutex
	waiters map[chan struct{}]struct{}
}

var _ store.Store = (*Store)(nil)

// Open opens the store named by dsn and brings its schema up to date. A dsn
// starting with postgres:// or postgresql:// selects PostgreSQL; anything
// else is the path of a SQLite database file (an optional sqlite:// prefix is
// stripped).
func Open(ctx context.Context, dsn string) (*Store, error) {
	var s *Store
	var err error
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		s, err = openPostgres(dsn)
	} else {
		s, err = openSQLite(strings.TrimPrefix(dsn, "sqlite://"))
	}
	if err != nil {
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func openSQLite(path string) (*Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite path %q: %w", path, err)
	}
	// WAL lets readers run beside the single writer; synchronous(FULL)
	// makes every acknowledged commit survive a power cut, not only kill -9.
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	base := "file:" + abs + "?"
	write, err := sql.Open("sqlite", base+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", abs, err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	rq := url.Values{}
	rq.Add("_pragma", "busy_timeout(10000)")
	rq.Add("_pragma", "query_only(1)")
	read, err := sql.Open("sqlite", base+rq.Encode())
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", abs, err)
	}
	read.SetMaxOpenConns(8)
	read.SetMaxIdleConns(8)
	read.SetConnMaxLifetime(0)
	// The first connection creates the file and switches it to WAL before
	// any reader opens it.
	if err := write.Ping(); err != nil {
		write.Close()
		read.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", abs, err)
	}
	return &Store{dialect: sqlite, write: write, read: read, waiters: map[chan struct{}]struct{}{}}, nil
}

func openPostgres(dsn string) (*Store, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	return &Store{dialect: postgres, write: db, read: db, waiters: map[chan struct{}]struct{}{}}, nil
}

func (s *Store) migrate(ctx context.Context) error {
	dir, gd := "migrations/sqlite", goose.DialectSQLite3
	if s.dialect == postgres {
		dir, gd = "migrations/postgres", goose.DialectPostgres
	}
	sub, err := fs.Sub(migrations, dir)
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(gd, s.write, sub)
	if err != nil {
		return fmt.Errorf("prepare migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate store schema: %w", err)
	}
	return nil
}

// Close closes the database connections.
func (s *Store) Close() error {
	err := s.write.Close()
	if s.read != s.write {
		if rerr := s.read.Close(); err == nil {
			err = rerr
		}
	}
	return err
}

// q rewrites ? placeholders for PostgreSQL.
func (s *Store) q(query string) string {
	if s.dialect != postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// View runs fn in a read-only transaction.
func (s *Store) View(ctx context.Context, fn func(store.Tx) error) error {
	opts := &sql.TxOptions{ReadOnly: true}
	if s.dialect == postgres {
		// A consistent snapshot for every read of the transaction; SQLite
		// read transactions in WAL mode already are one.
		opts.Isolation = sql.LevelRepeatableRead
	}
	sqlTx, err := s.read.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin read: %w", err)
	}
	defer sqlTx.Rollback()
	t := &tx{s: s, sql: sqlTx, ctx: ctx, now: now(), readOnly: true}
	if err := fn(t); err != nil {
		return err
	}
	return sqlTx.Commit()
}

// Update runs fn in a read-write transaction and appends its writes to the
// change log. Writers are serialised: SQLite has one writer connection and
// takes its lock at BEGIN; PostgreSQL writers lock the last_seq row first and
// then read committed data, which together give serializable writes and a
// commit order equal to sequence order.
func (s *Store) Update(ctx context.Context, fn func(store.Tx) error) (int64, error) {
	sqlTx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("begin write: %w", err)
	}
	defer sqlTx.Rollback()
	last, err := s.lockLastSeq(ctx, sqlTx)
	if err != nil {
		return 0, err
	}
	t := &tx{s: s, sql: sqlTx, ctx: ctx, now: now()}
	if err := fn(t); err != nil {
		return 0, err
	}
	if len(t.ops) == 0 {
		return 0, sqlTx.Commit()
	}
	ops := store.LoggedOps(t.compactOps())
	if len(ops) == 0 {
		// Only local kinds were written: nothing to log, no number used.
		if err := sqlTx.Commit(); err != nil {
			return 0, fmt.Errorf("commit local writes: %w", err)
		}
		s.notify()
		return 0, nil
	}
	c := store.Change{Seq: last + 1, Time: t.now.UnixMilli(), Ops: ops}
	if err := s.appendChange(ctx, sqlTx, c); err != nil {
		return 0, err
	}
	if err := sqlTx.Commit(); err != nil {
		return 0, fmt.Errorf("commit change %d: %w", c.Seq, err)
	}
	s.notify()
	return c.Seq, nil
}

// Apply writes a change from another store's log under its own sequence number.
func (s *Store) Apply(ctx context.Context, c store.Change) error {
	sqlTx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin apply: %w", err)
	}
	defer sqlTx.Rollback()
	last, err := s.lockLastSeq(ctx, sqlTx)
	if err != nil {
		return err
	}
	if c.Seq <= last {
		return nil
	}
	if c.Seq != last+1 {
		return fmt.Errorf("apply change %d after %d: %w", c.Seq, last, store.ErrSeqGap)
	}
	t := &tx{s: s, sql: sqlTx, ctx: ctx, now: time.UnixMilli(c.Time)}
	for _, op := range c.Ops {
		if op.Deleted() {
			err = t.delete(op.Kind, op.Key)
			if errors.Is(err, store.ErrNotFound) {
				err = nil
			}
		} else {
			err = t.put(op.Kind, op.Key, op.Value)
		}
		if err != nil {
			return fmt.Errorf("apply change %d: %w", c.Seq, err)
		}
	}
	c.Ops = store.LoggedOps(c.Ops)
	if err := s.appendChange(ctx, sqlTx, c); err != nil {
		return err
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("commit applied change %d: %w", c.Seq, err)
	}
	s.notify()
	return nil
}

// Rewind undoes the changes after toSeq from the change log alone: the
// value a document had at toSeq is the value of the newest op on it at or
// before toSeq, and a document no such op wrote did not exist.
func (s *Store) Rewind(ctx context.Context, toSeq int64) ([]store.Change, error) {
	if toSeq < 0 {
		return nil, fmt.Errorf("rewind to %d: sequence numbers start at 0", toSeq)
	}
	sqlTx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin rewind: %w", err)
	}
	defer sqlTx.Rollback()
	last, err := s.lockLastSeq(ctx, sqlTx)
	if err != nil {
		return nil, err
	}
	if toSeq >= last {
		return nil, nil
	}
	undone, err := s.readChanges(ctx, sqlTx, "seq > ? ORDER BY seq", toSeq)
	if err != nil {
		return nil, err
	}
	type docKey struct {
		kind store.Kind
		key  string
	}
	pending := map[docKey]bool{}
	for _, c := range undone {
		for _, op := range c.Ops {
			pending[docKey{op.Kind, op.Key}] = true
		}
	}
	// Walk the kept log from the newest change down, in pages, until every
	// touched document has found its value at toSeq.
	restore := map[docKey]json.RawMessage{}
	const page = 500
	below := toSeq + 1
	for len(pending) > 0 && below > 1 {
		cs, err := s.readChanges(ctx, sqlTx, "seq < ? ORDER BY seq DESC LIMIT "+fmt.Sprint(page), below)
		if err != nil {
			return nil, err
		}
		if len(cs) == 0 {
			break
		}
		for _, c := range cs {
			for i := len(c.Ops) - 1; i >= 0; i-- {
				op := c.Ops[i]
				k := docKey{op.Kind, op.Key}
				if pending[k] {
					delete(pending, k)
					restore[k] = op.Value
				}
			}
			below = c.Seq
		}
	}
	t := &tx{s: s, sql: sqlTx, ctx: ctx}
	for k := range pending {
		restore[k] = nil // created after toSeq
	}
	for k, v := range restore {
		if len(v) == 0 {
			err = t.delete(k.kind, k.key)
			if errors.Is(err, store.ErrNotFound) {
				err = nil
			}
		} else {
			err = t.put(k.kind, k.key, v)
		}
		if err != nil {
			return nil, fmt.Errorf("rewind to %d: %w", toSeq, err)
		}
	}
	if _, err := sqlTx.ExecContext(ctx, s.q("DELETE FROM changes WHERE seq > ?"), toSeq); err != nil {
		return nil, fmt.Errorf("rewind to %d: drop changes: %w", toSeq, err)
	}
	if _, err := sqlTx.ExecContext(ctx, s.q("UPDATE store_state SET value = ? WHERE name = 'last_seq'"), toSeq); err != nil {
		return nil, fmt.Errorf("rewind to %d: %w", toSeq, err)
	}
	if err := sqlTx.Commit(); err != nil {
		return nil, fmt.Errorf("commit rewind to %d: %w", toSeq, err)
	}
	s.notify()
	return undone, nil
}

func (s *Store) readChanges(ctx context.Context, sqlTx *sql.Tx, where string, arg int64) ([]store.Change, error) {
	rows, err := sqlTx.QueryContext(ctx, s.q("SELECT seq, time_ms, ops FROM changes WHERE "+where), arg)
	if err != nil {
		return nil, fmt.Errorf("read changes: %w", err)
	}
	defer rows.Close()
	var out []store.Change
	for rows.Next() {
		var c store.Change
		var ops []byte
		if err := rows.Scan(&c.Seq, &c.Time, &ops); err != nil {
			return nil, fmt.Errorf("read changes: %w", err)
		}
		if err := json.Unmarshal(ops, &c.Ops); err != nil {
			return nil, fmt.Errorf("decode change %d: %w", c.Seq, err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

func (s *Store) lockLastSeq(ctx context.Context, sqlTx *sql.Tx) (int64, error) {
	query := "SELECT value FROM store_state WHERE name = 'last_seq'"
	if s.dialect == postgres {
		query += " FOR UPDATE"
	}
	var last int64
	if err := sqlTx.QueryRowContext(ctx, query).Scan(&last); err != nil {
		return 0, fmt.Errorf("read last sequence number: %w", err)
	}
	return last, nil
}

func (s *Store) appendChange(ctx context.Context, sqlTx *sql.Tx, c store.Change) error {
	ops, err := json.Marshal(c.Ops)
	if err != nil {
		return fmt.Errorf("encode change %d: %w", c.Seq, err)
	}
	if _, err := sqlTx.ExecContext(ctx, s.q("INSERT INTO changes (seq, time_ms, ops) VALUES (?, ?, ?)"), c.Seq, c.Time, ops); err != nil {
		return fmt.Errorf("append change %d: %w", c.Seq, err)
	}
	if _, err := sqlTx.ExecContext(ctx, s.q("UPDATE store_state SET value = ? WHERE name = 'last_seq'"), c.Seq); err != nil {
		return fmt.Errorf("advance last sequence number to %d: %w", c.Seq, err)
	}
	return nil
}

// Changes returns up to limit changes after the given sequence number.
func (s *Store) Changes(ctx context.Context, after int64, limit int) ([]store.Change, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := s.read.QueryContext(ctx, s.q("SELECT seq, time_ms, ops FROM changes WHERE seq > ? ORDER BY seq LIMIT ?"), after, limit)
	if err != nil {
		return nil, fmt.Errorf("read changes after %d: %w", after, err)
	}
	defer rows.Close()
	var out []store.Change
	for rows.Next() {
		var c store.Change
		var ops []byte
		if err := rows.Scan(&c.Seq, &c.Time, &ops); err != nil {
			return nil, fmt.Errorf("read changes after %d: %w", after, err)
		}
		if err := json.Unmarshal(ops, &c.Ops); err != nil {
			return nil, fmt.Errorf("decode change %d: %w", c.Seq, err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// LastSeq returns the newest sequence number.
func (s *Store) LastSeq(ctx context.Context) (int64, error) {
	var last int64
	if err := s.read.QueryRowContext(ctx, "SELECT value FROM store_state WHERE name = 'last_seq'").Scan(&last); err != nil {
		return 0, fmt.Errorf("read last sequence number: %w", err)
	}
	return last, nil
}

// Notify returns a channel signalled after each commit.
func (s *Store) Notify() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.waiters[ch] = struct{}{}
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		delete(s.waiters, ch)
		s.mu.Unlock()
	}
}

func (s *Store) notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.waiters {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func now() time.Time { return time.UnixMilli(time.Now().UnixMilli()) }

type tx struct {
	s        *Store
	sql      *sql.Tx
	ctx      context.Context
	now      time.Time
	readOnly bool
	ops      []store.Op
}

func (t *tx) Now() time.Time { return t.now }

func (t *tx) Get(kind store.Kind, key string) (json.RawMessage, error) {
	var v []byte
	err := t.sql.QueryRowContext(t.ctx, t.s.q("SELECT value FROM documents WHERE kind = ? AND key = ?"), string(kind), key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get %s %q: %w", kind, key, err)
	}
	return v, nil
}

func (t *tx) Put(kind store.Kind, key string, value json.RawMessage) error {
	if t.readOnly {
		return store.ErrReadOnly
	}
	if !store.ValidKey(key) {
		return fmt.Errorf("put %s: invalid key %q", kind, key)
	}
	if len(value) == 0 || !json.Valid(value) {
		return fmt.Errorf("put %s %q: value is not JSON", kind, key)
	}
	if err := t.put(kind, key, value); err != nil {
		return err
	}
	t.ops = append(t.ops, store.Op{Kind: kind, Key: key, Value: append(json.RawMessage(nil), value...)})
	return nil
}

func (t *tx) put(kind store.Kind, key string, value json.RawMessage) error {
	_, err := t.sql.ExecContext(t.ctx, t.s.q(
		"INSERT INTO documents (kind, key, value) VALUES (?, ?, ?) ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value"),
		string(kind), key, []byte(value))
	if err != nil {
		return fmt.Errorf("put %s %q: %w", kind, key, err)
	}
	return nil
}

func (t *tx) Delete(kind store.Kind, key string) error {
	if t.readOnly {
		return store.ErrReadOnly
	}
	if err := t.delete(kind, key); err != nil {
		return err
	}
	t.ops = append(t.ops, store.Op{Kind: kind, Key: key})
	return nil
}

func (t *tx) delete(kind store.Kind, key string) error {
	res, err := t.sql.ExecContext(t.ctx, t.s.q("DELETE FROM documents WHERE kind = ? AND key = ?"), string(kind), key)
	if err != nil {
		return fmt.Errorf("delete %s %q: %w", kind, key, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return store.ErrNotFound
	}
	return nil
}

func (t *tx) Scan(kind store.Kind, prefix, after string, fn func(string, json.RawMessage) error) error {
	from := prefix
	if after > from {
		from = after
	}
	op := ">="
	if after != "" && after >= prefix {
		op = ">"
	}
	rows, err := t.sql.QueryContext(t.ctx, t.s.q("SELECT key, value FROM documents WHERE kind = ? AND key "+op+" ? ORDER BY key"), string(kind), from)
	if err != nil {
		return fmt.Errorf("scan %s %q: %w", kind, prefix, err)
	}
	defer rows.Close()
	for rows.Next() {
		var key string
		var value []byte
		if err := rows.Scan(&key, &value); err != nil {
			return fmt.Errorf("scan %s %q: %w", kind, prefix, err)
		}
		if !strings.HasPrefix(key, prefix) {
			break
		}
		if err := fn(key, value); err != nil {
			if errors.Is(err, store.ErrStopScan) {
				return nil
			}
			return err
		}
	}
	return rows.Err()
}

func (t *tx) NextID(name string) (int64, error) {
	var n int64
	raw, err := t.Get(store.CounterKind, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return 0, err
	default:
		if err := json.Unmarshal(raw, &n); err != nil {
			return 0, fmt.Errorf("decode counter %q: %w", name, err)
		}
	}
	n++
	if err := t.Put(store.CounterKind, name, json.RawMessage(fmt.Sprint(n))); err != nil {
		return 0, err
	}
	return n, nil
}

// compactOps keeps the last write of each document, in the order of each
// document's first write, so that a change replays to the same final state.
func (t *tx) compactOps() []store.Op {
	type k struct {
		kind store.Kind
		key  string
	}
	idx := make(map[k]int, len(t.ops))
	out := make([]store.Op, 0, len(t.ops))
	for _, op := range t.ops {
		if i, ok := idx[k{op.Kind, op.Key}]; ok {
			out[i] = op
			continue
		}
		idx[k{op.Kind, op.Key}] = len(out)
		out = append(out, op)
	}
	return out
}
