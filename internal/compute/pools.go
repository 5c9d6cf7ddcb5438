package compute

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/tandemdata/tandem/internal/agent/wire"
	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/permissions"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/store"
)

func rawOf(v any) json.RawMessage {
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil || string(b) == "null" {
		return nil
	}
	return b
}

// poolNameTaken reports whether another live pool has the name.
func poolNameTaken(tx store.Tx, name, except string) (bool, error) {
	taken := false
	err := store.ScanPrefix(tx, kindPool, "", func(_ string, p Pool) error {
		if p.State == PoolActive && p.ID != except && strings.EqualFold(p.Name, name) {
			taken = true
			return store.ErrStopScan
		}
		return nil
	})
	return taken, err
}

func (s *Service) createPool(ctx context.Context, req *api.Request) (any, error) {
	var r poolRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	p := principal.MustFrom(ctx)
	if !p.HasEntitlement("allow-instance-pool-create") {
		return nil, api.Denied("%s does not have the allow-instance-pool-create entitlement needed to create instance pools. Ask an admin to grant it.", p.Name)
	}
	if err := validatePool(r, s.Catalog); err != nil {
		return nil, err
	}
	var id string
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		if taken, err := poolNameTaken(tx, r.InstancePoolName, ""); err != nil {
			return err
		} else if taken {
			return api.Errorf(api.ResourceAlreadyExists, "An instance pool named %q already exists.", r.InstancePoolName)
		}
		id = newID(tx.Now(), poolInfix(r.InstancePoolName)+"-pool-")
		pl := poolFrom(r, id)
		pl.State, pl.Creator = PoolActive, p.Name
		pl.DefaultTags = map[string]string{"Vendor": "Tandem", "InstancePoolCreator": p.Name, "InstancePoolName": pl.Name, "InstancePoolId": id}
		if err := store.Insert(tx, kindPool, id, pl); err != nil {
			return err
		}
		return permissions.Set(tx, "instance-pools", id, ownerGrant(p, permissions.CanManage))
	})
	if err != nil {
		return nil, err
	}
	s.nudge()
	return map[string]string{"instance_pool_id": id}, nil
}

// poolInfix is the word in a pool id (0826-084204-pots8-pool-7jdm3sfb):
// five letters of the name.
func poolInfix(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
		if b.Len() == 5 {
			break
		}
	}
	for b.Len() < 5 {
		b.WriteByte('x')
	}
	return b.String()
}

func poolFrom(r poolRequest, id string) Pool {
	idle := defaultIdleMinutes
	if r.IdleAutoterminationMinutes != nil {
		idle = *r.IdleAutoterminationMinutes
	}
	return Pool{ID: id, Name: r.InstancePoolName, NodeTypeID: r.NodeTypeID, MinIdle: r.MinIdleInstances, MaxCapacity: r.MaxCapacity,
		IdleAutoterminationMinutes: idle, PreloadedSparkVersions: r.PreloadedSparkVersions, PreloadedDockerImages: rawOf(r.PreloadedDockerImages),
		CustomTags: r.CustomTags, EnableElasticDisk: r.EnableElasticDisk, DiskSpec: rawOf(r.DiskSpec), AwsAttributes: rawOf(r.AwsAttributes),
		AzureAttributes: rawOf(r.AzureAttributes), GcpAttributes: rawOf(r.GcpAttributes), RemoteDiskThroughput: r.RemoteDiskThroughput,
		TotalInitialRemoteDisk: r.TotalInitialRemoteDisk}
}

func (s *Service) lookupPool(tx store.Tx, p principal.Principal, id string, need permissions.Level) (Pool, error) {
	if strings.TrimSpace(id) == "" {
		return Pool{}, missing("instance_pool_id")
	}
	pl, err := store.Get[Pool](tx, kindPool, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && pl.State == PoolDeleted) {
		return pl, api.NotFound("Instance pool %s does not exist.", id)
	}
	if err != nil {
		return pl, err
	}
	return pl, s.Perms.Check(tx, p, "instance-pools", id, need)
}

func (s *Service) editPool(ctx context.Context, req *api.Request) (any, error) {
	var r poolRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	p := principal.MustFrom(ctx)
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		cur, err := s.lookupPool(tx, p, r.InstancePoolID, permissions.CanManage)
		if err != nil {
			return err
		}
		if r.NodeTypeID == "" {
			r.NodeTypeID = cur.NodeTypeID
		}
		if r.NodeTypeID != cur.NodeTypeID {
			return api.InvalidParam("The node type of an instance pool cannot be changed (it is %s).", cur.NodeTypeID)
		}
		if err := validatePool(r, s.Catalog); err != nil {
			return err
		}
		if taken, err := poolNameTaken(tx, r.InstancePoolName, cur.ID); err != nil {
			return err
		} else if taken {
			return api.Errorf(api.ResourceAlreadyExists, "An instance pool named %q already exists.", r.InstancePoolName)
		}
		// Edit changes the sizes, name and tags; what the instances are
		// made of stays.
		cur.Name, cur.MinIdle, cur.MaxCapacity, cur.CustomTags = r.InstancePoolName, r.MinIdleInstances, r.MaxCapacity, r.CustomTags
		if r.IdleAutoterminationMinutes != nil {
			cur.IdleAutoterminationMinutes = *r.IdleAutoterminationMinutes
		}
		if r.RemoteDiskThroughput != 0 {
			cur.RemoteDiskThroughput = r.RemoteDiskThroughput
		}
		if r.TotalInitialRemoteDisk != 0 {
			cur.TotalInitialRemoteDisk = r.TotalInitialRemoteDisk
		}
		cur.DefaultTags["InstancePoolName"] = cur.Name
		return store.Put(tx, kindPool, cur.ID, cur)
	})
	if err == nil {
		s.nudge()
	}
	return nil, err
}

func (s *Service) deletePool(ctx context.Context, req *api.Request) (any, error) {
	var r struct {
		InstancePoolID string `json:"instance_pool_id"`
	}
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	p := principal.MustFrom(ctx)
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		pl, err := s.lookupPool(tx, p, r.InstancePoolID, permissions.CanManage)
		if err != nil {
			return err
		}
		// Idle instances go at once; used ones when their cluster lets go.
		pl.State = PoolDeleted
		if err := store.Put(tx, kindPool, pl.ID, pl); err != nil {
			return err
		}
		return permissions.Delete(tx, "instance-pools", pl.ID)
	})
	if err == nil {
		s.nudge()
	}
	return nil, err
}

// PoolStats counts a pool's instances.
type PoolStats struct {
	UsedCount        int `json:"used_count"`
	IdleCount        int `json:"idle_count"`
	PendingUsedCount int `json:"pending_used_count"`
	PendingIdleCount int `json:"pending_idle_count"`
}

// poolDetails renders a pool for get and list, with its stats: used
// instances serve a cluster (pending until their node runs Spark), idle
// ones wait (pending while they boot or are cleaned).
func (s *Service) poolDetails(pl Pool, insts []Instance) map[string]any {
	var st PoolStats
	for _, in := range insts {
		if in.PoolID != pl.ID || in.State == InstDeleting {
			continue
		}
		ob, seen := s.obs.get(in.ID)
		current := seen && ob.status.Generation == in.Generation
		switch {
		case in.ClusterID != "" && current && ob.status.Phase == wire.PhaseRunning:
			st.UsedCount++
		case in.ClusterID != "":
			st.PendingUsedCount++
		case current && ob.status.Phase == wire.PhaseIdle:
			st.IdleCount++
		default:
			st.PendingIdleCount++
		}
	}
	var out map[string]any
	b, _ := json.Marshal(pl)
	json.Unmarshal(b, &out)
	delete(out, "pending_errors")
	delete(out, "creator")
	out["stats"] = st
	status := map[string]any{}
	if len(pl.PendingErrors) > 0 {
		status["pending_instance_errors"] = pl.PendingErrors
	}
	out["status"] = status
	return out
}

func (s *Service) getPool(ctx context.Context, req *api.Request) (any, error) {
	var r struct {
		InstancePoolID string `json:"instance_pool_id"`
	}
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	p := principal.MustFrom(ctx)
	var out map[string]any
	err := s.Store.View(ctx, func(tx store.Tx) error {
		pl, err := s.lookupPool(tx, p, r.InstancePoolID, permissions.CanAttachTo)
		if err != nil {
			return err
		}
		insts, err := store.List[Instance](tx, kindInstance, "")
		out = s.poolDetails(pl, insts)
		return err
	})
	return out, err
}

func (s *Service) listPools(ctx context.Context, req *api.Request) (any, error) {
	p := principal.MustFrom(ctx)
	out := []map[string]any{}
	err := s.Store.View(ctx, func(tx store.Tx) error {
		insts, err := store.List[Instance](tx, kindInstance, "")
		if err != nil {
			return err
		}
		return store.ScanPrefix(tx, kindPool, "", func(_ string, pl Pool) error {
			if pl.State == PoolDeleted {
				return nil
			}
			if lvl, _, err := s.Perms.Effective(tx, p, "instance-pools", pl.ID); err != nil || lvl == permissions.None {
				return err
			}
			out = append(out, s.poolDetails(pl, insts))
			return nil
		})
	})
	return map[string]any{"instance_pools": out}, err
}
