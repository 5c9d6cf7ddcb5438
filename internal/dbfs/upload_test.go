package dbfs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"github.com/tandemdata/tandem/internal/storage"
)

func TestUsableHandlesBelongToTheirCreatorUntilIdle(t *testing.T) {
	idle := HandleIdle.Milliseconds()
	h := Handle{ID: 7, Owner: "u1", LastUsed: 1_000}
	stream := Handle{ID: 8, Owner: "u1", Stream: true, LastUsed: 1_000}
	cases := []struct {
		name   string
		h      Handle
		owner  string
		stream bool
		now    int64
		want   bool
	}{
		{"creator, fresh", h, "u1", false, 1_000, true},
		{"creator, just before the idle limit", h, "u1", false, 1_000 + idle, true},
		{"creator, idle too long", h, "u1", false, 1_000 + idle + 1, false},
		{"another principal", h, "u2", false, 1_000, false},
		{"a multipart put's upload through add-block", stream, "u1", false, 1_000, false},
		{"a multipart put's upload by its put", stream, "u1", true, 1_000, true},
		{"an API handle taken for a put", h, "u1", true, 1_000, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := usable(tc.h, tc.owner, tc.stream, tc.now); got != tc.want {
				t.Fatalf("usable = %v, want %v", got, tc.want)
			}
		})
	}
}

// deletions is a storage backend that only records deletions.
type deletions struct {
	storage.Backend
	deleted []string
}

func (d *deletions) Delete(_ context.Context, name string) error {
	d.deleted = append(d.deleted, name)
	return nil
}

func TestAFailedChangeDeletesItsBlobsOnlyWhenNothingCommitted(t *testing.T) {
	blobs := []storage.Blob{{Name: "dbfs/a"}, {Name: "dbfs/b"}}
	cases := []struct {
		name  string
		cause error
		want  int
	}{
		{"refused by us", exists400("A file or directory already exists at the input path /x."), 2},
		{"refused, wrapped", fmt.Errorf("publish: %w", handleNotFound(3)), 2},
		{"the store failed: it may have committed", errors.New("read tcp: connection reset by peer"), 0},
		{"a cancelled request", context.Canceled, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			backend := &deletions{}
			s := &Service{Storage: backend, Log: slog.New(slog.DiscardHandler)}
			s.discard(context.Background(), blobs, tc.cause)
			if len(backend.deleted) != tc.want {
				t.Fatalf("deleted %v, want %d blobs deleted", backend.deleted, tc.want)
			}
		})
	}
}
