package account

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/store"
)

// runConversion rewrites every object of the account with the
// infrastructure layer (enabling) or without it (disabling), one object at
// a time under the object's write lock, and tells Run when a whole pass
// has found nothing left to convert. A crash or restart resumes it: the
// settings say a conversion is running, and objects already converted are
// skipped.
func (a *Account) runConversion(ctx context.Context, st *stack, enabling bool) {
	for ctx.Err() == nil {
		left, err := a.conversionPass(ctx, st, enabling)
		if err == nil && left == 0 {
			select {
			case a.convDone <- struct{}{}:
			default:
			}
			return
		}
		if err != nil && ctx.Err() == nil {
			a.conv.mu.Lock()
			a.conv.lastError = err.Error()
			a.conv.mu.Unlock()
			a.opts.Log.Warn("storage infrastructure encryption: conversion pass failed; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// conversionPass converts what one listing finds and returns how many
// objects it could not convert.
func (a *Account) conversionPass(ctx context.Context, st *stack, enabling bool) (int, error) {
	below := st.below()
	var names []string
	err := below.List(ctx, "", func(oi storage.ObjectInfo) error {
		if oi.Name != st.infra.RecordName() {
			names = append(names, oi.Name)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("list the objects to convert: %w", err)
	}
	a.conv.mu.Lock()
	a.conv.remaining = int64(len(names))
	a.conv.mu.Unlock()
	failed := 0
	var firstErr error
	for _, name := range names {
		if ctx.Err() != nil {
			return len(names), ctx.Err()
		}
		done, err := a.convertObject(ctx, st, below, name, enabling)
		a.conv.mu.Lock()
		a.conv.remaining--
		if done {
			a.conv.converted++
		}
		a.conv.mu.Unlock()
		if err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	return failed, firstErr
}

// convertObject rewrites one object if it is not in the target format yet.
// The stored bytes pass through a temporary file, so the object is never
// read and replaced at once.
func (a *Account) convertObject(ctx context.Context, st *stack, below storage.Backend, name string, enabling bool) (bool, error) {
	defer a.lockName(name)()
	encrypted, err := st.infra.Encrypted(ctx, name)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("convert %s: %w", name, err)
	}
	if encrypted == enabling {
		return false, nil
	}
	var r io.ReadCloser
	if enabling {
		r, err = below.Get(ctx, name, 0, -1)
	} else {
		r, err = st.infra.Get(ctx, name, 0, -1)
	}
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("convert %s: read: %w", name, err)
	}
	tmp, err := os.CreateTemp(a.opts.Dir, "convert-*")
	if err != nil {
		r.Close()
		return false, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	_, err = io.Copy(tmp, r)
	r.Close()
	if err != nil {
		return false, fmt.Errorf("convert %s: read: %w", name, err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return false, err
	}
	if enabling {
		err = st.infra.Put(ctx, name, tmp)
	} else {
		err = below.Put(ctx, name, tmp)
	}
	if err != nil {
		return false, fmt.Errorf("convert %s: write: %w", name, err)
	}
	return true, nil
}

// completeConversion ends a conversion: the stack drops the mixed layer
// (strict infrastructure encryption, or none) and the settings say so.
func (a *Account) completeConversion(ctx context.Context) error {
	a.loopMu.Lock()
	defer a.loopMu.Unlock()
	a.stopLoopsLocked()
	defer a.restartLoopsLocked()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.set.InfrastructureConversion == "" {
		return nil
	}
	old := a.current()
	next := a.set
	next.InfrastructureConversion = ""
	next.Updated = time.Now().UnixMilli()
	st, err := a.build(ctx, next, next.Encryption)
	if err != nil {
		return err
	}
	if _, err := a.opts.Store.Update(ctx, func(tx store.Tx) error { return store.Put(tx, Kind, a.opts.Name, next) }); err != nil {
		st.close()
		return err
	}
	if !next.Encryption.InfrastructureEncryption {
		// The infrastructure key record wraps nothing any more.
		if err := old.below().Delete(ctx, old.infra.RecordName()); err != nil {
			a.opts.Log.Warn("storage infrastructure encryption: old key record not removed", "err", err)
		}
	}
	old.close()
	a.setStack(st)
	a.set = next
	a.conv.mu.Lock()
	a.conv.converted, a.conv.remaining, a.conv.lastError = 0, 0, ""
	a.conv.mu.Unlock()
	a.opts.Log.Info("storage infrastructure encryption conversion done", "enabled", next.Encryption.InfrastructureEncryption)
	return nil
}
