// Package storageaccount delivers audit records to a storage account in
// Azure's diagnostic-settings layout: one JSON-lines blob per category and
// hour,
//
//	insights-logs-<category>/resourceId=<resource id>/y=YYYY/m=MM/d=DD/h=HH/m=00/PT1H.json
//
// with each record in Azure Databricks' wire form (destination.Wire).
// Records are appended to the blob of the hour in which they are
// delivered, as Azure fills its append blobs: a blob never changes after
// its hour, which is what lets a digest seal it; a record delayed by an
// outage lands in a later hour's blob and its own time says when it
// happened. After a crash the destination may deliver a batch again, so a
// blob can hold a record twice: readers deduplicate by logId, as Azure's
// documentation tells its users to.
package storageaccount

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/tandemdata/tandem/internal/audit"
	"github.com/tandemdata/tandem/internal/audit/destination"
	"github.com/tandemdata/tandem/internal/audit/digest"
	"github.com/tandemdata/tandem/internal/storage"
)

// Appender is a storage account that can append to an object (Azure's
// append blobs; storage/local has it). Accounts without it are written by
// reading the blob and putting it back whole, which is correct but costs a
// copy of the hour's blob per batch.
type Appender interface {
	Append(ctx context.Context, name string, r io.Reader) error
}

// Destination writes records to a storage account.
type Destination struct {
	Account    storage.Backend
	ResourceID string
	// Chain, if set, seals the blobs this destination writes in digests.
	Chain *digest.Chain

	whole map[string]bool // blobs whose tail was checked since start
}

// BlobName is the blob a record of category delivered at t goes to.
func BlobName(resourceID, category string, t time.Time) string {
	t = t.UTC()
	return fmt.Sprintf("%s/resourceId=%s/y=%04d/m=%02d/d=%02d/h=%02d/m=00/PT1H.json",
		destination.Container(category), resourceID, t.Year(), t.Month(), t.Day(), t.Hour())
}

// Deliver appends the batch to the hour's blob of each category.
func (d *Destination) Deliver(ctx context.Context, recs []*audit.Record, now time.Time) error {
	blobs := map[string]*bytes.Buffer{}
	for _, r := range recs {
		line, err := destination.Wire(r)
		if err != nil {
			return fmt.Errorf("encode audit record %s: %w", r.Properties.LogID, err)
		}
		name := BlobName(d.ResourceID, r.Category, now)
		buf := blobs[name]
		if buf == nil {
			buf = &bytes.Buffer{}
			blobs[name] = buf
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	names := make([]string, 0, len(blobs))
	for n := range blobs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if d.Chain != nil {
			if err := d.Chain.Touch(name, now); err != nil {
				return err
			}
		}
		if err := d.ensureWhole(ctx, name); err != nil {
			return err
		}
	}
	// The blobs are independent: append to them at once, so a batch waits
	// for one append's syncs rather than one per category. A failure
	// redelivers the batch (readers deduplicate by logId).
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.append(ctx, name, blobs[name].Bytes()); err != nil {
				errs[i] = fmt.Errorf("write %s: %w", name, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Seal writes the digest of the period that ended, if one did.
func (d *Destination) Seal(ctx context.Context, now time.Time) error {
	if d.Chain == nil {
		return nil
	}
	due, err := d.Chain.Due(now)
	if err != nil || !due {
		return err
	}
	pending, err := d.Chain.Pending(now)
	if err != nil {
		return err
	}
	// A blob cut short by a crash is repaired before it is sealed, or the
	// digest would seal the torn bytes the repair then removes.
	for _, name := range pending {
		if err := d.ensureWhole(ctx, name); err != nil {
			return err
		}
	}
	return d.Chain.Seal(ctx, now)
}

func (d *Destination) append(ctx context.Context, name string, b []byte) error {
	if a, ok := d.Account.(Appender); ok {
		return a.Append(ctx, name, bytes.NewReader(b))
	}
	old, err := readAll(ctx, d.Account, name)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	return d.Account.Put(ctx, name, io.MultiReader(bytes.NewReader(old), bytes.NewReader(b)))
}

// ensureWhole cuts a torn last line (a crash in the middle of an append)
// off a blob, once per blob per process: afterwards this process is the
// only writer and appends whole lines.
func (d *Destination) ensureWhole(ctx context.Context, name string) error {
	if d.whole[name] {
		return nil
	}
	info, err := d.Account.Stat(ctx, name)
	if errors.Is(err, storage.ErrNotFound) {
		d.markWhole(name)
		return nil
	}
	if err != nil {
		return fmt.Errorf("check %s: %w", name, err)
	}
	if info.Size > 0 {
		r, err := d.Account.Get(ctx, name, info.Size-1, 1)
		if err != nil {
			return fmt.Errorf("check %s: %w", name, err)
		}
		last, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			return fmt.Errorf("check %s: %w", name, err)
		}
		if len(last) == 1 && last[0] != '\n' {
			all, err := readAll(ctx, d.Account, name)
			if err != nil {
				return fmt.Errorf("repair %s: %w", name, err)
			}
			keep := all[:bytes.LastIndexByte(all, '\n')+1]
			if err := d.Account.Put(ctx, name, bytes.NewReader(keep)); err != nil {
				return fmt.Errorf("repair %s: %w", name, err)
			}
		}
	}
	d.markWhole(name)
	return nil
}

func (d *Destination) markWhole(name string) {
	if d.whole == nil {
		d.whole = map[string]bool{}
	}
	d.whole[name] = true
}

func readAll(ctx context.Context, a storage.Backend, name string) ([]byte, error) {
	r, err := a.Get(ctx, name, 0, -1)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// Check proves the account can be written: it puts and deletes a probe
// object. Diagnostic settings call it before saving a setting.
func Check(ctx context.Context, a storage.Backend) error {
	const probe = "insights-logs-probe/.tandem-write-check"
	if err := a.Put(ctx, probe, bytes.NewReader(nil)); err != nil {
		return fmt.Errorf("the storage account refused a write: %w", err)
	}
	return a.Delete(ctx, probe)
}
