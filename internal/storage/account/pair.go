package account

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/store"
)

// In a disaster-recovery deployment the account's geo-replication ships to
// the peer region's account (Options.Secondary). For the peer to read what
// it receives after a failover, both accounts use one account key: the
// leader's. A passive region's account that holds nothing yet (no key
// record) takes it before it first opens: the leader's account KEKs into
// its keyring (Pairing.AdoptKeys), the leader's key records, as stored,
// into its own primary copies. What the peer ships then lands in those
// copies below the encryption (Replica), so a promoted region reads it as
// its own. An account that already made its own key never adopts the
// leader's: that would lock it out of what it wrote; its peer's shipments
// are refused instead (the replication service compares the key ids)
// until it is emptied and paired.

// Pairing is how a passive region's account reaches its leader's account.
type Pairing struct {
	// Passive reports whether the region follows a leader now.
	Passive func() bool
	// AdoptKeys puts the leader's account KEKs into the keyring.
	AdoptKeys func(ctx context.Context) error
	// Leader is the leader's account below its encryption, over the link.
	Leader storage.Backend
	// OnPaired is called when the account's key is the leader's (taken
	// now or earlier): the region then keeps the account KEKs in step.
	OnPaired func()
}

// keyRecords are the account's key records, service first.
var keyRecords = []string{storage.ReservedPrefix + "keys/service", storage.ReservedPrefix + "keys/infrastructure"}

// recordKeyID reads the account key id of a service key record.
func recordKeyID(ctx context.Context, b storage.Backend) (string, error) {
	r, err := b.Get(ctx, keyRecords[0], 0, -1)
	if err != nil {
		return "", err
	}
	defer r.Close()
	raw, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return "", err
	}
	var rec struct {
		KeyID string `json:"key_id"`
	}
	if err := json.Unmarshal(raw, &rec); err != nil || rec.KeyID == "" {
		return "", fmt.Errorf("the key record %s is unreadable", keyRecords[0])
	}
	return rec.KeyID, nil
}

// pair runs before the stack is built (Open).
func (a *Account) pair(ctx context.Context, set Settings) error {
	p := a.opts.Pairing
	prim, err := a.copySet(ctx, set.Site, set.Redundancy.Zoned() && set.Site == primary)
	if err != nil {
		return err
	}
	defer prim.Close()
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	own, err := recordKeyID(ctx, prim)
	switch {
	case err == nil:
		// A restart: the peer may be down (this region may be the
		// survivor), so ask briefly.
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		leader, lerr := recordKeyID(cctx, p.Leader)
		cancel()
		if lerr != nil {
			a.opts.Log.Info("storage pairing: the peer's account key is not known now", "err", lerr)
			return nil
		}
		if leader == own {
			if p.OnPaired != nil {
				p.OnPaired()
			}
			return nil
		}
		if p.Passive() {
			a.opts.Log.Error("storage pairing: this account has its own account key, not its leader's: storage contents will not replicate to it",
				"key_id", own, "leader_key_id", leader)
		}
		return nil
	case !errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("read the account's key record: %w", err)
	case !p.Passive():
		return nil // a leader makes its own key
	}
	// A new account of a passive region: it holds nothing of its own.
	if err := p.AdoptKeys(lctx); err != nil {
		return fmt.Errorf("take the leader's account keys: %w", err)
	}
	took := 0
	for _, name := range keyRecords {
		r, err := p.Leader.Get(lctx, name, 0, -1)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read the leader's key record %s: %w", name, err)
		}
		raw, err := io.ReadAll(io.LimitReader(r, 1<<20))
		r.Close()
		if err != nil {
			return fmt.Errorf("read the leader's key record %s: %w", name, err)
		}
		if err := prim.Put(ctx, name, bytes.NewReader(raw)); err != nil {
			return fmt.Errorf("write the leader's key record %s: %w", name, err)
		}
		took++
	}
	if took == 0 {
		return errors.New("the leader's account has no key record yet: start the leader first")
	}
	a.opts.Log.Info("storage pairing: took the leader's account key", "records", took)
	if p.OnPaired != nil {
		p.OnPaired()
	}
	return nil
}

// RetryShipping makes geo-replication retry a failed shipment now (the
// secondary is known to be reachable again).
func (a *Account) RetryShipping() {
	if g := a.current().geo; g != nil {
		g.Retry()
	}
}

// KeyID is the id of the account key (not secret: it names the key).
func (a *Account) KeyID() string { return a.current().svc.KeyInfo().KeyID }

// Replica is the account as its peer region's geo-replication writes and
// reads it: objects as stored, below the encryption, in the primary
// copies, and not shipped again. Reads serve the raw copies (the peer
// reads the leader's key records at pairing).
func (a *Account) Replica() storage.Backend { return replica{a} }

type replica struct{ a *Account }

func (r replica) prim() storage.Backend { return r.a.current().primary }

func (r replica) Put(ctx context.Context, name string, body io.Reader) error {
	if err := r.a.writable(); err != nil {
		return err
	}
	r.a.mu.RLock()
	defer r.a.mu.RUnlock()
	return r.a.current().primary.Put(ctx, name, body)
}

func (r replica) Get(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	return r.prim().Get(ctx, name, off, n)
}

func (r replica) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	return r.prim().Stat(ctx, name)
}

func (r replica) Delete(ctx context.Context, name string) error {
	if err := r.a.writable(); err != nil {
		return err
	}
	r.a.mu.RLock()
	defer r.a.mu.RUnlock()
	return r.a.current().primary.Delete(ctx, name)
}

func (r replica) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	return r.prim().List(ctx, prefix, fn)
}

// followSettings reloads a passive region's account when the settings its
// leader replicated change (checked every interval): reads it serves then
// use the leader's current layers. A leading region's settings change only
// through Update.
func (a *Account) followSettings(ctx context.Context, interval time.Duration) {
	p := a.opts.Pairing
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !p.Passive() {
			continue
		}
		var stored Settings
		err := a.opts.Store.View(ctx, func(tx store.Tx) error {
			var err error
			stored, err = store.Get[Settings](tx, Kind, a.opts.Name)
			return err
		})
		a.mu.RLock()
		changed := err == nil && stored.Updated != a.set.Updated
		a.mu.RUnlock()
		if !changed {
			continue
		}
		if err := a.Reload(ctx); err != nil && ctx.Err() == nil {
			a.opts.Log.Warn("storage: the leader's new settings did not load here yet", "err", err)
		} else if err == nil {
			a.opts.Log.Info("storage: reloaded with the leader's new settings")
		}
	}
}

// Reload rebuilds the account from its stored settings and key records,
// with writes paused: a promoted disaster-recovery region takes the
// settings and key records its leader replicated to it. On failure the
// account goes on as it was.
func (a *Account) Reload(ctx context.Context) error {
	a.loopMu.Lock()
	defer a.loopMu.Unlock()
	a.stopLoopsLocked()
	defer a.restartLoopsLocked()
	a.mu.Lock()
	defer a.mu.Unlock()
	var set Settings
	err := a.opts.Store.View(ctx, func(tx store.Tx) error {
		var err error
		set, err = store.Get[Settings](tx, Kind, a.opts.Name)
		return err
	})
	if err != nil {
		return fmt.Errorf("reload the account's settings: %w", err)
	}
	old := a.current()
	old.close()
	st, err := a.build(ctx, set, set.Encryption)
	if err != nil {
		if st2, err2 := a.build(ctx, a.set, a.set.Encryption); err2 == nil {
			a.setStack(st2)
		} else {
			a.opts.Log.Error("storage reload: the account could not be opened again", "err", err2)
		}
		return fmt.Errorf("reload the account: %w", err)
	}
	a.setStack(st)
	a.set = set
	return nil
}
