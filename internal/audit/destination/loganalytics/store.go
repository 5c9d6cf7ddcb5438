// Package loganalytics is the region's queryable store of audit records:
// the role Azure Monitor's Log Analytics plays for Azure Databricks. It is a
// SQLite database of its own (DATA_DIR/audit/records.db), apart from the
// metadata store, for three reasons: audit volume (tens of thousands of
// records a second at peak) would swamp the metadata store's change log
// and its replication to the secondary region, which must not carry
// region-local delivery state; the records need their own indexes (time,
// category, user, request id); and records are deduplicated by logId, the
// table's primary key, which is what makes at-least-once delivery show
// each record once.
//
// Records are stored structured (identity, requestParams and response as
// objects), as the query API returns them.
package loganalytics

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite"

	"github.com/tandemdata/tandem/internal/audit"
)

// ErrBadPageToken is returned for a page token this store did not issue.
var ErrBadPageToken = errors.New("invalid page token")

// Store is the query store.
type Store struct {
	write *sql.DB
	read  *sql.DB
}

const schema = `
CREATE TABLE IF NOT EXISTS records (
	log_id         TEXT PRIMARY KEY,
	time_ms        INTEGER NOT NULL,
	category       TEXT NOT NULL,
	operation_name TEXT NOT NULL,
	action_name    TEXT NOT NULL,
	user           TEXT NOT NULL,
	request_id     TEXT NOT NULL,
	record         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_time ON records (time_ms, log_id);
CREATE INDEX IF NOT EXISTS records_category ON records (category, time_ms, log_id);
CREATE INDEX IF NOT EXISTS records_user ON records (user, time_ms, log_id);
CREATE INDEX IF NOT EXISTS records_request ON records (request_id);
`

// Open opens (or creates) the store at path.
func Open(path string) (*Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	// WAL lets queries run beside delivery; synchronous(FULL) because a
	// delivered batch must survive whatever happens after the delivery
	// cursor moves past it.
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Set("_txlock", "immediate")
	base := "file:" + abs + "?"
	write, err := sql.Open("sqlite", base+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open audit record store: %w", err)
	}
	write.SetMaxOpenConns(1)
	if _, err := write.Exec(schema); err != nil {
		write.Close()
		return nil, fmt.Errorf("create audit record store: %w", err)
	}
	rq := url.Values{}
	rq.Add("_pragma", "busy_timeout(10000)")
	rq.Add("_pragma", "query_only(1)")
	read, err := sql.Open("sqlite", base+rq.Encode())
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("open audit record store: %w", err)
	}
	read.SetMaxOpenConns(4)
	return &Store{write: write, read: read}, nil
}

// Close closes the store.
func (s *Store) Close() error {
	return errors.Join(s.read.Close(), s.write.Close())
}

// Deliver stores a batch in one transaction; records already stored (same
// logId) are skipped.
func (s *Store) Deliver(ctx context.Context, recs []*audit.Record, _ time.Time) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store audit records: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO records
		(log_id, time_ms, category, operation_name, action_name, user, request_id, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("store audit records: %w", err)
	}
	defer stmt.Close()
	for _, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("encode audit record %s: %w", r.Properties.LogID, err)
		}
		t, err := time.Parse(audit.TimeFormat, r.Time)
		if err != nil {
			t, err = time.Parse(time.RFC3339Nano, r.Time)
			if err != nil {
				return fmt.Errorf("audit record %s has a bad time %q", r.Properties.LogID, r.Time)
			}
		}
		if _, err := stmt.ExecContext(ctx, r.Properties.LogID, t.UnixMilli(), r.Category, r.OperationName,
			r.Properties.ActionName, r.Identity.Email, r.Properties.RequestID, string(b)); err != nil {
			return fmt.Errorf("store audit record: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store audit records: %w", err)
	}
	return nil
}

// Query selects records. Zero fields do not filter.
type Query struct {
	// StartTime and EndTime bound the records' time, epoch milliseconds:
	// StartTime <= time < EndTime.
	StartTime, EndTime int64
	Category           string
	// OperationName matches the full name (Microsoft.Databricks/jobs/create)
	// or, without a slash, the action name (create).
	OperationName string
	User          string
	RequestID     string
	// Text matches records whose JSON contains it, ignoring case.
	Text      string
	PageToken string
	// Limit bounds the page (default 100, at most 1000).
	Limit int
}

// Page is one page of results, oldest first.
type Page struct {
	Records       []*audit.Record
	NextPageToken string
}

type pageToken struct {
	Time  int64  `json:"t"`
	LogID string `json:"id"`
}

// Find runs q.
func (s *Store) Find(ctx context.Context, q Query) (Page, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	var where []string
	var args []any
	add := func(cond string, a ...any) { where = append(where, cond); args = append(args, a...) }
	if q.StartTime > 0 {
		add("time_ms >= ?", q.StartTime)
	}
	if q.EndTime > 0 {
		add("time_ms < ?", q.EndTime)
	}
	if q.Category != "" {
		add("category = ?", q.Category)
	}
	if q.OperationName != "" {
		if strings.Contains(q.OperationName, "/") {
			add("operation_name = ?", q.OperationName)
		} else {
			add("action_name = ?", q.OperationName)
		}
	}
	if q.User != "" {
		add("user = ?", q.User)
	}
	if q.RequestID != "" {
		add("request_id = ?", q.RequestID)
	}
	if q.Text != "" {
		add("instr(lower(record), lower(?)) > 0", q.Text)
	}
	if q.PageToken != "" {
		b, err := base64.RawURLEncoding.DecodeString(q.PageToken)
		var tok pageToken
		if err != nil || json.Unmarshal(b, &tok) != nil || tok.LogID == "" {
			return Page{}, ErrBadPageToken
		}
		add("(time_ms > ? OR (time_ms = ? AND log_id > ?))", tok.Time, tok.Time, tok.LogID)
	}
	stmt := "SELECT time_ms, log_id, record FROM records"
	if len(where) > 0 {
		stmt += " WHERE " + strings.Join(where, " AND ")
	}
	stmt += " ORDER BY time_ms, log_id LIMIT ?"
	args = append(args, limit+1)
	rows, err := s.read.QueryContext(ctx, stmt, args...)
	if err != nil {
		return Page{}, fmt.Errorf("query audit records: %w", err)
	}
	defer rows.Close()
	var page Page
	var last pageToken
	for rows.Next() {
		var raw string
		var tok pageToken
		if err := rows.Scan(&tok.Time, &tok.LogID, &raw); err != nil {
			return Page{}, fmt.Errorf("query audit records: %w", err)
		}
		if len(page.Records) == limit {
			b, _ := json.Marshal(last)
			page.NextPageToken = base64.RawURLEncoding.EncodeToString(b)
			break
		}
		var r audit.Record
		if err := json.Unmarshal([]byte(raw), &r); err != nil {
			return Page{}, fmt.Errorf("decode audit record %s: %w", tok.LogID, err)
		}
		page.Records = append(page.Records, &r)
		last = tok
	}
	if err := rows.Err(); err != nil {
		return Page{}, fmt.Errorf("query audit records: %w", err)
	}
	return page, nil
}

// Prune removes records older than before (the store's retention).
func (s *Store) Prune(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.write.ExecContext(ctx, "DELETE FROM records WHERE time_ms < ?", before.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("prune audit records: %w", err)
	}
	return res.RowsAffected()
}
