package compute

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/tandemdata/tandem/internal/agent/wire"
	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/permissions"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/store"
)

// Routes returns the Clusters API (2.1, and 2.0 for older clients), the
// Instance Pools API, and Tandem's driver-logs and Spark UI endpoints.
func (s *Service) Routes() []api.Route {
	var out []api.Route
	for _, v := range []string{"2.0", "2.1"} {
		r := func(method, name, action string, h api.Handler) api.Route {
			return api.Route{Pattern: method + " /api/" + v + "/clusters/" + name, Category: "clusters", Action: action, Handler: h}
		}
		out = append(out,
			r("POST", "create", "create", s.create),
			r("POST", "edit", "edit", s.edit),
			r("POST", "update", "edit", s.updateHandler),
			r("POST", "start", "start", s.start),
			r("POST", "restart", "restart", s.restart),
			r("POST", "delete", "delete", s.delete),
			r("POST", "permanent-delete", "permanentDelete", s.permanentDelete),
			r("POST", "resize", "resize", s.resize),
			r("POST", "pin", "pin", s.pin),
			r("POST", "unpin", "unpin", s.unpin),
			r("POST", "change-owner", "changeClusterOwner", s.changeOwner),
			r("GET", "get", "get", s.get),
			r("GET", "list", "list", s.list),
			r("POST", "events", "events", s.events),
			r("GET", "list-node-types", "listNodeTypes", s.listNodeTypes),
			r("GET", "spark-versions", "listSparkVersions", s.sparkVersions),
			r("GET", "list-zones", "listZones", s.listZones),
		)
	}
	p := func(method, name, action string, h api.Handler) api.Route {
		return api.Route{Pattern: method + " /api/2.0/instance-pools/" + name, Category: "instancePools", Action: action, Handler: h}
	}
	out = append(out,
		p("POST", "create", "create", s.createPool),
		p("POST", "edit", "edit", s.editPool),
		p("POST", "delete", "delete", s.deletePool),
		p("GET", "get", "get", s.getPool),
		p("GET", "list", "list", s.listPools),
		api.Route{Pattern: "GET /api/2.0/tandem/usage", Category: "clusters", Action: "usage", Handler: s.usageHandler},
		api.Route{Pattern: "GET /api/2.0/tandem/clusters/driver-logs", Category: "clusters", Action: "driverLogs", Handler: s.driverLogs, NoResult: true},
		// Spark UI pages are not actions worth an audit record each; who
		// may see them is checked like any call.
		api.Route{Pattern: "/driver-proxy/o/{org}/{cluster_id}/sparkui/{rest...}", Category: "clusters", Action: "sparkUi",
			Handler: s.sparkUI, NoAudit: true, MaxBody: 8 << 20},
		api.Route{Pattern: "/driver-proxy/o/{org}/{cluster_id}/sparkui", Category: "clusters", Action: "sparkUi",
			Handler: s.sparkUI, NoAudit: true},
	)
	return out
}

func missing(field string) error { return api.MissingField(field) }

func notExist(format string, args ...any) error { return api.NotFound(format, args...) }

func invalidState(c Cluster) error {
	return api.Errorf(api.InvalidState, "Cluster %s is in unexpected state %s.", c.ID, titleState(c.State))
}

// titleState writes a state as Databricks' messages do (Running).
func titleState(st string) string {
	if st == "" {
		return st
	}
	return st[:1] + strings.ToLower(st[1:])
}

// ownerGrant gives the creator of an object a level on it.
func ownerGrant(p principal.Principal, level permissions.Level) permissions.Grant {
	if p.Kind == principal.ServicePrincipal {
		return permissions.Grant{ServicePrincipalName: p.Name, Level: level}
	}
	return permissions.Grant{UserName: p.Name, Level: level}
}

// lookupCluster reads a cluster and checks that p holds need on it.
func (s *Service) lookupCluster(tx store.Tx, p principal.Principal, id string, need permissions.Level) (Cluster, error) {
	if strings.TrimSpace(id) == "" {
		return Cluster{}, missing("cluster_id")
	}
	c, err := getCluster(tx, id)
	if errors.Is(err, store.ErrNotFound) {
		return c, clusterNotFound(id)
	}
	if err != nil {
		return c, err
	}
	return c, s.Perms.Check(tx, p, "clusters", id, need)
}

// usePools checks the pools a spec names: they exist and p may attach to
// them.
func (s *Service) usePools(tx store.Tx, p principal.Principal, spec ClusterSpec) (*Pool, *Pool, error) {
	get := func(id string) (*Pool, error) {
		if id == "" {
			return nil, nil
		}
		pl, err := store.Get[Pool](tx, kindPool, id)
		if errors.Is(err, store.ErrNotFound) || (err == nil && pl.State != PoolActive) {
			return nil, api.InvalidParam("Instance pool %s does not exist.", id)
		}
		if err != nil {
			return nil, err
		}
		if err := s.Perms.Check(tx, p, "instance-pools", id, permissions.CanAttachTo); err != nil {
			return nil, err
		}
		return &pl, nil
	}
	pool, err := get(spec.InstancePoolID)
	if err != nil {
		return nil, nil, err
	}
	dpool, err := get(spec.DriverInstancePoolID)
	return pool, dpool, err
}

// newSecret makes a cluster's RPC secret, wrapped for the store, when the
// cluster runs with intra-cluster encryption.
func (s *Service) newSecret(ctx context.Context, spec ClusterSpec) ([]byte, error) {
	if !s.wantsEncryption(spec) {
		return nil, nil
	}
	if s.Secrets == nil {
		return nil, errors.New("intra-cluster encryption needs a keyring")
	}
	raw := make([]byte, 32)
	if _, err := randRead(raw); err != nil {
		return nil, err
	}
	secret := []byte(base64.RawURLEncoding.EncodeToString(raw))
	return s.Secrets.Wrap(ctx, secret)
}

func (s *Service) putEvent(tx store.Tx, c *Cluster, typ string, d EventDetails) error {
	c.EventSeq++
	return store.Put(tx, kindEvent, eventKey(c.ID, c.EventSeq), Event{ClusterID: c.ID, Timestamp: tx.Now().UnixMilli(), Type: typ, Details: d})
}

type createRequest struct {
	ClusterSpec
	CloneFrom *struct {
		SourceClusterID string `json:"source_cluster_id"`
	} `json:"clone_from,omitempty"`
	ApplyPolicyDefaultValues bool `json:"apply_policy_default_values,omitempty"`
}

func (s *Service) create(ctx context.Context, req *api.Request) (any, error) {
	p := principal.MustFrom(ctx)
	var r createRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if !p.HasEntitlement("allow-cluster-create") {
		return nil, api.Denied("%s does not have the allow-cluster-create entitlement needed to create clusters. Ask an admin to grant it.", p.Name)
	}
	spec := r.ClusterSpec
	if r.CloneFrom != nil {
		var err error
		if spec, err = s.cloneSpec(ctx, p, r.CloneFrom.SourceClusterID, req.Body()); err != nil {
			return nil, err
		}
	}
	id, err := s.createCluster(ctx, p, spec, SourceAPI, req.ID, "")
	if err != nil {
		return nil, err
	}
	return map[string]string{"cluster_id": id}, nil
}

// cloneSpec starts from another cluster's spec and applies the fields the
// request sets.
func (s *Service) cloneSpec(ctx context.Context, p principal.Principal, sourceID string, body []byte) (ClusterSpec, error) {
	var src Cluster
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		src, err = s.lookupCluster(tx, p, sourceID, permissions.CanAttachTo)
		return err
	})
	if err != nil {
		return ClusterSpec{}, err
	}
	spec := src.Spec
	if err := json.Unmarshal(body, &spec); err != nil {
		return spec, api.Errorf(api.MalformedRequest, "Invalid JSON given in the body of the request - %v", err)
	}
	return spec, nil
}

// createCluster records a new cluster, PENDING, and grants its creator
// CAN_MANAGE; the reconciler starts it. jobKey, when set, makes creation
// idempotent (job clusters).
func (s *Service) createCluster(ctx context.Context, p principal.Principal, spec ClusterSpec, source, requestID, jobKey string) (string, error) {
	secret, err := s.newSecret(ctx, spec)
	if err != nil {
		return "", err
	}
	var id string
	_, err = s.Store.Update(ctx, func(tx store.Tx) error {
		if jobKey != "" {
			if existing, err := store.Get[string](tx, kindJobKey, jobKey); err == nil {
				id = existing
				return nil
			} else if !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		pool, dpool, err := s.usePools(tx, p, spec)
		if err == nil {
			err = validateSpec(spec, s.Catalog, pool, dpool)
		}
		if err == nil {
			err = checkRuntimeSource(source, spec.SparkVersion)
		}
		// A job's cluster that cannot be made is recorded terminated, with
		// the reason, so the run fails with it (an API call just fails).
		var invalid *api.Error
		if err != nil && (source != SourceJob || !errors.As(err, &invalid)) {
			return err
		}
		now := tx.Now()
		id = newID(now, "")
		c := Cluster{ID: id, Spec: spec, Creator: p.Name, Source: source, State: Pending, StateMessage: "Acquiring instances.",
			CreatedTime: now.UnixMilli(), StartTime: now.UnixMilli(), StateSince: now.UnixMilli(), Generation: 1,
			TargetWorkers: spec.initialWorkers(), Op: "create", OpRequest: requestID, OpUser: p.Name, Secret: secret,
			DefaultTags: map[string]string{"Vendor": "Tandem", "Creator": p.Name, "ClusterName": spec.ClusterName, "ClusterId": id}}
		if source == SourceJob {
			c.DefaultTags["JobCluster"] = "true"
			c.RunID = runIDOfJobKey(jobKey)
		}
		sp := spec
		if err := s.putEvent(tx, &c, EvCreating, EventDetails{User: p.Name, Attributes: &sp, ClusterSize: sizeOf(spec)}); err != nil {
			return err
		}
		if invalid != nil {
			r := TerminationReason{Code: "INVALID_ARGUMENT", Type: ReasonClientError,
				Parameters: map[string]string{"databricks_error_message": invalid.Message}}
			c.State, c.StateMessage, c.Reason, c.TerminatedTime, c.Op = Terminated, reasonMessage(r), &r, now.UnixMilli(), ""
			if err := s.putEvent(tx, &c, EvTerminating, EventDetails{Reason: &r}); err != nil {
				return err
			}
		}
		if err := store.Insert(tx, kindCluster, id, c); err != nil {
			return err
		}
		if jobKey != "" {
			if err := store.Put(tx, kindJobKey, jobKey, id); err != nil {
				return err
			}
		}
		return permissions.Set(tx, "clusters", id, ownerGrant(p, permissions.CanManage))
	})
	if err != nil {
		return "", err
	}
	s.nudge()
	return id, nil
}

type editRequest struct {
	ClusterSpec
	ClusterID string `json:"cluster_id"`
}

func (s *Service) edit(ctx context.Context, req *api.Request) (any, error) {
	var r editRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	return nil, s.editCluster(ctx, req, r.ClusterID, func(ClusterSpec) (ClusterSpec, error) { return r.ClusterSpec, nil })
}

// updateHandler serves clusters/update: the fields named by update_mask
// are taken from the partial cluster, the rest kept.
func (s *Service) updateHandler(ctx context.Context, req *api.Request) (any, error) {
	var r struct {
		ClusterID  string          `json:"cluster_id"`
		UpdateMask string          `json:"update_mask"`
		Cluster    json.RawMessage `json:"cluster"`
	}
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if strings.TrimSpace(r.UpdateMask) == "" {
		return nil, missing("update_mask")
	}
	return nil, s.editCluster(ctx, req, r.ClusterID, func(cur ClusterSpec) (ClusterSpec, error) {
		var curMap, partial map[string]json.RawMessage
		b, _ := json.Marshal(cur)
		json.Unmarshal(b, &curMap)
		if len(r.Cluster) > 0 {
			if err := json.Unmarshal(r.Cluster, &partial); err != nil {
				return cur, api.Errorf(api.MalformedRequest, "cluster must be an object")
			}
		}
		for _, f := range strings.Split(r.UpdateMask, ",") {
			f = strings.TrimSpace(f)
			if f == "" {
				continue
			}
			if f == "cluster_id" {
				return cur, api.InvalidParam("update_mask may not name cluster_id.")
			}
			if v, ok := partial[f]; ok {
				curMap[f] = v
			} else {
				delete(curMap, f)
			}
		}
		b, _ = json.Marshal(curMap)
		var out ClusterSpec
		if err := json.Unmarshal(b, &out); err != nil {
			return cur, api.InvalidParam("The update does not make a valid cluster spec: %v", err)
		}
		return out, nil
	})
}

// editCluster replaces a cluster's spec: a running cluster restarts with
// it, a terminated one keeps it for its next start.
func (s *Service) editCluster(ctx context.Context, req *api.Request, id string, change func(ClusterSpec) (ClusterSpec, error)) error {
	p := principal.MustFrom(ctx)
	var cur Cluster
	if err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		cur, err = s.lookupCluster(tx, p, id, permissions.CanManage)
		return err
	}); err != nil {
		return err
	}
	spec, err := change(cur.Spec)
	if err != nil {
		return err
	}
	secret, err := s.newSecret(ctx, spec)
	if err != nil {
		return err
	}
	_, err = s.Store.Update(ctx, func(tx store.Tx) error {
		c, err := s.lookupCluster(tx, p, id, permissions.CanManage)
		if err != nil {
			return err
		}
		if c.Source == SourceJob {
			return api.InvalidParam("Cluster %s is a job cluster: job clusters cannot be edited.", id)
		}
		if c.State != Running && c.State != Terminated && c.State != Error {
			return invalidState(c)
		}
		pool, dpool, err := s.usePools(tx, p, spec)
		if err != nil {
			return err
		}
		if err := validateSpec(spec, s.Catalog, pool, dpool); err != nil {
			return err
		}
		if err := checkRuntimeSource(c.Source, spec.SparkVersion); err != nil {
			return err
		}
		prev := c.Spec
		c.Spec = spec
		cs := spec
		if err := s.putEvent(tx, &c, EvEdited, EventDetails{User: p.Name, PreviousAttributes: &prev, Attributes: &cs,
			PreviousClusterSize: sizeOf(prev), ClusterSize: sizeOf(spec)}); err != nil {
			return err
		}
		if c.State == Running {
			c.Generation++
			c.Secret = secret
			c.TargetWorkers = spec.clampWorkers(c.TargetWorkers)
			c.State, c.StateMessage, c.StateSince = Restarting, "Restarting with the new configuration.", tx.Now().UnixMilli()
			s.setOp(&c, "edit", req.ID, p.Name)
			if err := s.putEvent(tx, &c, EvRestarting, EventDetails{User: p.Name}); err != nil {
				return err
			}
		} else {
			c.TargetWorkers = spec.initialWorkers()
		}
		return store.Put(tx, kindCluster, id, c)
	})
	if err == nil {
		s.nudge()
	}
	return err
}

// setOp records the asynchronous operation a call started.
func (s *Service) setOp(c *Cluster, op, requestID, user string) {
	c.Op, c.OpRequest, c.OpUser = op, requestID, user
}

type clusterIDRequest struct {
	ClusterID string `json:"cluster_id"`
}

func (s *Service) start(ctx context.Context, req *api.Request) (any, error) {
	var r clusterIDRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	return nil, s.startCluster(ctx, principal.MustFrom(ctx), r.ClusterID, req.ID)
}

// startCluster starts a terminated cluster.
func (s *Service) startCluster(ctx context.Context, p principal.Principal, id, requestID string) error {
	var spec ClusterSpec
	if err := s.Store.View(ctx, func(tx store.Tx) error {
		c, err := s.lookupCluster(tx, p, id, permissions.CanRestart)
		spec = c.Spec
		return err
	}); err != nil {
		return err
	}
	secret, err := s.newSecret(ctx, spec)
	if err != nil {
		return err
	}
	_, err = s.Store.Update(ctx, func(tx store.Tx) error {
		c, err := s.lookupCluster(tx, p, id, permissions.CanRestart)
		if err != nil {
			return err
		}
		if c.State != Terminated && c.State != Error {
			return invalidState(c)
		}
		if _, _, err := s.usePools(tx, p, c.Spec); err != nil {
			return err
		}
		now := tx.Now().UnixMilli()
		c.Generation++
		c.Secret = secret
		c.State, c.StateMessage, c.StateSince, c.StartTime = Pending, "Acquiring instances.", now, now
		c.Reason, c.TerminatedTime, c.LaunchFailures, c.Waiting = nil, 0, 0, ""
		c.TargetWorkers = c.Spec.initialWorkers()
		s.setOp(&c, "start", requestID, p.Name)
		if err := s.putEvent(tx, &c, EvStarting, EventDetails{User: p.Name}); err != nil {
			return err
		}
		return store.Put(tx, kindCluster, id, c)
	})
	if err == nil {
		s.nudge()
	}
	return err
}

func (s *Service) restart(ctx context.Context, req *api.Request) (any, error) {
	var r struct {
		ClusterID   string `json:"cluster_id"`
		RestartUser string `json:"restart_user"`
	}
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	p := principal.MustFrom(ctx)
	var spec ClusterSpec
	if err := s.Store.View(ctx, func(tx store.Tx) error {
		c, err := s.lookupCluster(tx, p, r.ClusterID, permissions.CanRestart)
		spec = c.Spec
		return err
	}); err != nil {
		return nil, err
	}
	secret, err := s.newSecret(ctx, spec)
	if err != nil {
		return nil, err
	}
	_, err = s.Store.Update(ctx, func(tx store.Tx) error {
		c, err := s.lookupCluster(tx, p, r.ClusterID, permissions.CanRestart)
		if err != nil {
			return err
		}
		if c.State != Running && c.State != Resizing {
			return invalidState(c)
		}
		c.Generation++
		c.Secret = secret
		c.State, c.StateMessage, c.StateSince = Restarting, "Restarting.", tx.Now().UnixMilli()
		s.setOp(&c, "restart", req.ID, p.Name)
		if err := s.putEvent(tx, &c, EvRestarting, EventDetails{User: p.Name}); err != nil {
			return err
		}
		return store.Put(tx, kindCluster, c.ID, c)
	})
	if err == nil {
		s.nudge()
	}
	return nil, err
}

func (s *Service) delete(ctx context.Context, req *api.Request) (any, error) {
	var r clusterIDRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	p := principal.MustFrom(ctx)
	return nil, s.terminate(ctx, p, r.ClusterID, req.ID, TerminationReason{Code: "USER_REQUEST", Type: ReasonSuccess,
		Parameters: map[string]string{"username": p.Name}}, permissions.CanRestart, false)
}

// terminate terminates a cluster; permanent also removes it once it has
// terminated.
func (s *Service) terminate(ctx context.Context, p principal.Principal, id, requestID string, reason TerminationReason,
	need permissions.Level, permanent bool) error {
	var canceled *OpResult
	var cl Cluster
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		canceled = nil
		c, err := s.lookupCluster(tx, p, id, need)
		if err != nil {
			return err
		}
		changed := permanent && !c.PermanentDelete
		c.PermanentDelete = c.PermanentDelete || permanent
		switch c.State {
		case Terminating, Terminated:
		case Error:
			c.State, c.StateSince = Terminated, tx.Now().UnixMilli()
			changed = true
		default:
			if c.Op != "" && c.Op != "delete" {
				canceled = &OpResult{Action: c.Op + "Result", RequestID: c.OpRequest, User: c.OpUser, Message: "The cluster was terminated first."}
			}
			r := reason
			c.Reason = &r
			c.State, c.StateMessage, c.StateSince = Terminating, reasonMessage(r), tx.Now().UnixMilli()
			s.setOp(&c, "delete", requestID, p.Name)
			if err := s.putEvent(tx, &c, EvTerminating, EventDetails{User: p.Name, Reason: &r}); err != nil {
				return err
			}
			changed = true
		}
		if !changed {
			return nil
		}
		cl = c
		return store.Put(tx, kindCluster, id, c)
	})
	if err != nil {
		return err
	}
	if canceled != nil {
		s.auditResult(ctx, cl, *canceled)
	}
	s.nudge()
	return nil
}

func (s *Service) permanentDelete(ctx context.Context, req *api.Request) (any, error) {
	var r clusterIDRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	p := principal.MustFrom(ctx)
	return nil, s.terminate(ctx, p, r.ClusterID, req.ID, TerminationReason{Code: "USER_REQUEST", Type: ReasonSuccess,
		Parameters: map[string]string{"username": p.Name}}, permissions.CanManage, true)
}

func (s *Service) resize(ctx context.Context, req *api.Request) (any, error) {
	var r struct {
		ClusterID  string     `json:"cluster_id"`
		NumWorkers *int       `json:"num_workers"`
		Autoscale  *AutoScale `json:"autoscale"`
	}
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if r.NumWorkers != nil && r.Autoscale != nil {
		return nil, api.InvalidParam("Specify either num_workers or autoscale, not both.")
	}
	p := principal.MustFrom(ctx)
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		c, err := s.lookupCluster(tx, p, r.ClusterID, permissions.CanManage)
		if err != nil {
			return err
		}
		if c.State != Running && c.State != Resizing {
			return api.Errorf(api.InvalidState, "Cluster %s is in unexpected state %s: only a running cluster can be resized.", c.ID, titleState(c.State))
		}
		prev := c.Spec
		spec := c.Spec
		if r.Autoscale != nil {
			a := *r.Autoscale
			spec.Autoscale, spec.NumWorkers = &a, 0
		} else {
			n := 0
			if r.NumWorkers != nil {
				n = *r.NumWorkers
			}
			spec.Autoscale, spec.NumWorkers = nil, n
		}
		pool, dpool, err := s.usePools(tx, p, spec)
		if err != nil {
			return err
		}
		if err := validateSpec(spec, s.Catalog, pool, dpool); err != nil {
			return err
		}
		c.Spec = spec
		before := c.TargetWorkers
		c.TargetWorkers = spec.clampWorkers(before)
		if err := s.putEvent(tx, &c, EvResizing, EventDetails{User: p.Name, Cause: CauseUserRequest, CurrentNumWorkers: before,
			TargetNumWorkers: c.TargetWorkers, PreviousClusterSize: sizeOf(prev), ClusterSize: sizeOf(spec)}); err != nil {
			return err
		}
		if c.TargetWorkers > before {
			c.State, c.StateMessage, c.StateSince = Resizing, fmt.Sprintf("Adding nodes: from %d to %s.", before, fmtWorkers(c.TargetWorkers)), tx.Now().UnixMilli()
			s.setOp(&c, "resize", req.ID, p.Name)
		}
		return store.Put(tx, kindCluster, c.ID, c)
	})
	if err == nil {
		s.nudge()
	}
	return nil, err
}

func (s *Service) pin(ctx context.Context, req *api.Request) (any, error) {
	return nil, s.setPinned(ctx, req, true)
}

func (s *Service) unpin(ctx context.Context, req *api.Request) (any, error) {
	return nil, s.setPinned(ctx, req, false)
}

func (s *Service) setPinned(ctx context.Context, req *api.Request, pinned bool) error {
	var r clusterIDRequest
	if err := req.Decode(&r); err != nil {
		return err
	}
	p := principal.MustFrom(ctx)
	if !p.Admin {
		return api.Denied("Only workspace admins can pin or unpin clusters; %s is not an admin.", p.Name)
	}
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		c, err := s.lookupCluster(tx, p, r.ClusterID, permissions.CanManage)
		if err != nil || c.Pinned == pinned {
			return err
		}
		c.Pinned = pinned
		typ := EvPinned
		if !pinned {
			typ = EvUnpinned
		}
		if err := s.putEvent(tx, &c, typ, EventDetails{User: p.Name}); err != nil {
			return err
		}
		return store.Put(tx, kindCluster, c.ID, c)
	})
	return err
}

func (s *Service) changeOwner(ctx context.Context, req *api.Request) (any, error) {
	var r struct {
		ClusterID     string `json:"cluster_id"`
		OwnerUsername string `json:"owner_username"`
	}
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	p := principal.MustFrom(ctx)
	if !p.Admin {
		return nil, api.Denied("Only workspace admins can change a cluster's owner; %s is not an admin.", p.Name)
	}
	if r.OwnerUsername == "" {
		return nil, missing("owner_username")
	}
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		c, err := s.lookupCluster(tx, p, r.ClusterID, permissions.CanManage)
		if err != nil {
			return err
		}
		c.Creator = r.OwnerUsername
		if err := permissions.Add(tx, "clusters", c.ID, permissions.Grant{UserName: r.OwnerUsername, Level: permissions.CanManage}); err != nil {
			return err
		}
		return store.Put(tx, kindCluster, c.ID, c)
	})
	return nil, err
}

// SparkNode is an instance in get's driver and executors.
type SparkNode struct {
	PrivateIP      string `json:"private_ip,omitempty"`
	PublicDNS      string `json:"public_dns,omitempty"`
	NodeID         string `json:"node_id,omitempty"`
	InstanceID     string `json:"instance_id,omitempty"`
	StartTimestamp int64  `json:"start_timestamp,omitempty"`
	HostPrivateIP  string `json:"host_private_ip,omitempty"`
}

// ClusterDetails is a cluster as get and list return it.
type ClusterDetails struct {
	ClusterSpec
	ClusterID         string             `json:"cluster_id"`
	CreatorUserName   string             `json:"creator_user_name,omitempty"`
	ClusterSource     string             `json:"cluster_source,omitempty"`
	State             string             `json:"state"`
	StateMessage      string             `json:"state_message"`
	StartTime         int64              `json:"start_time,omitempty"`
	TerminatedTime    int64              `json:"terminated_time,omitempty"`
	LastRestartedTime int64              `json:"last_restarted_time,omitempty"`
	LastStateLossTime int64              `json:"last_state_loss_time,omitempty"`
	TerminationReason *TerminationReason `json:"termination_reason,omitempty"`
	DefaultTags       map[string]string  `json:"default_tags,omitempty"`
	Driver            *SparkNode         `json:"driver,omitempty"`
	Executors         []SparkNode        `json:"executors,omitempty"`
	SparkContextID    int64              `json:"spark_context_id,omitempty"`
	ClusterCores      float64            `json:"cluster_cores,omitempty"`
	ClusterMemoryMB   int64              `json:"cluster_memory_mb,omitempty"`
	Spec              *ClusterSpec       `json:"spec,omitempty"`
	// ClusterLogStatus says when logs were last delivered (clusters/get).
	ClusterLogStatus *LogSyncStatus `json:"cluster_log_status,omitempty"`
	// Usage is a Tandem extension (clients ignore it): the cluster's
	// uptime and cost so far, in clusters/get.
	Usage *ClusterUsage `json:"usage,omitempty"`
}

func (s *Service) details(c Cluster, insts []Instance) ClusterDetails {
	d := ClusterDetails{ClusterSpec: c.Spec, ClusterID: c.ID, CreatorUserName: c.Creator, ClusterSource: c.Source,
		State: c.State, StateMessage: c.StateMessage, StartTime: c.StartTime, TerminatedTime: c.TerminatedTime,
		LastRestartedTime: c.LastRestartedTime, LastStateLossTime: c.LastStateLossTime, DefaultTags: c.DefaultTags}
	spec := c.Spec
	d.Spec = &spec
	d.NumWorkers = c.TargetWorkers
	if c.State == Terminated || c.State == Terminating || c.State == Error {
		d.TerminationReason = c.Reason
	}
	if c.State == Running || c.State == Resizing {
		d.SparkContextID = c.SparkContextID
	}
	if c.Spec.NodeTypeID == "" && c.Spec.InstancePoolID != "" {
		// A pool-backed cluster reports its pool's node type.
		for _, in := range insts {
			d.NodeTypeID = in.NodeType
			if d.DriverNodeTypeID == "" && in.Role == wire.RoleDriver {
				d.DriverNodeTypeID = in.NodeType
			}
		}
	}
	if d.DriverNodeTypeID == "" {
		d.DriverNodeTypeID = d.NodeTypeID
	}
	sort.Slice(insts, func(i, j int) bool { return insts[i].AssignedTime < insts[j].AssignedTime })
	for _, in := range insts {
		if in.ClusterGen != c.Generation || in.State == InstDeleting {
			continue
		}
		host := ""
		ready := false
		if ob, ok := s.obs.get(in.ID); ok && ob.status.Generation == in.Generation {
			host = ob.status.Host
			ready = ob.status.Phase == wire.PhaseRunning
		}
		node := SparkNode{PrivateIP: host, HostPrivateIP: host, NodeID: strings.TrimPrefix(in.ID, "i-"), InstanceID: in.ID,
			StartTimestamp: in.AssignedTime}
		nt, _ := s.Catalog.nodeType(in.NodeType)
		if in.Role == wire.RoleDriver {
			n := node
			d.Driver = &n
		} else if ready {
			d.Executors = append(d.Executors, node)
		} else {
			continue
		}
		d.ClusterCores += nt.NumCores
		d.ClusterMemoryMB += int64(nt.MemoryMB)
	}
	return d
}

func instancesOf(tx store.Tx, clusterID string) ([]Instance, error) {
	var out []Instance
	err := store.ScanPrefix(tx, kindInstance, "", func(_ string, in Instance) error {
		if in.ClusterID == clusterID {
			out = append(out, in)
		}
		return nil
	})
	return out, err
}

func (s *Service) get(ctx context.Context, req *api.Request) (any, error) {
	var r clusterIDRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	p := principal.MustFrom(ctx)
	var out ClusterDetails
	err := s.Store.View(ctx, func(tx store.Tx) error {
		c, err := s.lookupCluster(tx, p, r.ClusterID, permissions.CanAttachTo)
		if err != nil {
			return err
		}
		insts, err := instancesOf(tx, c.ID)
		if err != nil {
			return err
		}
		out = s.details(c, insts)
		out.ClusterLogStatus, err = logStatus(tx, c.ID)
		if err == nil {
			out.Usage, err = s.clusterUsage(tx, c)
		}
		return err
	})
	return out, err
}

// Clusters terminated longer ago than this are not listed (unless pinned).
const listTerminatedWindow = 30 * 24 * 3600 * 1000

func (s *Service) list(ctx context.Context, req *api.Request) (any, error) {
	var r struct {
		PageSize  int    `json:"page_size"`
		PageToken string `json:"page_token"`
		FilterBy  struct {
			ClusterStates  []string `json:"cluster_states"`
			ClusterSources []string `json:"cluster_sources"`
			IsPinned       bool     `json:"is_pinned"`
			PolicyID       string   `json:"policy_id"`
		} `json:"filter_by"`
		SortBy struct {
			Field     string `json:"field"`
			Direction string `json:"direction"`
		} `json:"sort_by"`
	}
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if r.PageSize < 0 || r.PageSize > 100 {
		return nil, api.InvalidParam("page_size must be between 0 and 100, got %d.", r.PageSize)
	}
	offset, err := decodeToken(r.PageToken)
	if err != nil {
		return nil, err
	}
	p := principal.MustFrom(ctx)
	now := s.now()
	var out []ClusterDetails
	err = s.Store.View(ctx, func(tx store.Tx) error {
		insts := map[string][]Instance{}
		if err := store.ScanPrefix(tx, kindInstance, "", func(_ string, in Instance) error {
			if in.ClusterID != "" {
				insts[in.ClusterID] = append(insts[in.ClusterID], in)
			}
			return nil
		}); err != nil {
			return err
		}
		return store.ScanPrefix(tx, kindCluster, "", func(_ string, c Cluster) error {
			if c.PermanentDelete {
				return nil
			}
			if c.State == Terminated && !c.Pinned && now-c.TerminatedTime > listTerminatedWindow {
				return nil
			}
			f := r.FilterBy
			if len(f.ClusterStates) > 0 && !contains(f.ClusterStates, c.State) ||
				len(f.ClusterSources) > 0 && !contains(f.ClusterSources, c.Source) ||
				f.IsPinned && !c.Pinned || f.PolicyID != "" && c.Spec.PolicyID != f.PolicyID {
				return nil
			}
			if lvl, _, err := s.Perms.Effective(tx, p, "clusters", c.ID); err != nil || lvl == permissions.None {
				return err
			}
			d := s.details(c, insts[c.ID])
			if len(c.Spec.ClusterLogConf) > 0 {
				var err error
				if d.ClusterLogStatus, err = logStatus(tx, c.ID); err != nil {
					return err
				}
			}
			out = append(out, d)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	sortClusters(out, r.SortBy.Field, r.SortBy.Direction)
	size := r.PageSize
	if size == 0 {
		size = len(out)
	}
	resp := map[string]any{"clusters": []ClusterDetails{}}
	if offset < len(out) {
		end := min(len(out), offset+size)
		resp["clusters"] = out[offset:end]
		if end < len(out) {
			resp["next_page_token"] = encodeToken(end)
		}
		if offset > 0 {
			resp["prev_page_token"] = encodeToken(max(0, offset-size))
		}
	}
	return resp, nil
}

// stateRank orders states for the default listing: live clusters first.
var stateRank = map[string]int{Running: 0, Resizing: 0, Restarting: 1, Pending: 1, Terminating: 2, Error: 3, Terminated: 3}

func sortClusters(cs []ClusterDetails, field, dir string) {
	less := func(a, b ClusterDetails) bool {
		if field == "CLUSTER_NAME" {
			if a.ClusterName != b.ClusterName {
				return strings.ToLower(a.ClusterName) < strings.ToLower(b.ClusterName)
			}
			return a.ClusterID < b.ClusterID
		}
		if stateRank[a.State] != stateRank[b.State] {
			return stateRank[a.State] < stateRank[b.State]
		}
		if a.StartTime != b.StartTime {
			return a.StartTime > b.StartTime
		}
		return a.ClusterID < b.ClusterID
	}
	sort.SliceStable(cs, func(i, j int) bool {
		if dir == "DESC" {
			return less(cs[j], cs[i])
		}
		return less(cs[i], cs[j])
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func encodeToken(offset int) string {
	return base64.RawURLEncoding.EncodeToString([]byte("o:" + strconv.Itoa(offset)))
}

func decodeToken(tok string) (int, error) {
	if tok == "" {
		return 0, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err == nil && strings.HasPrefix(string(b), "o:") {
		if n, err := strconv.Atoi(string(b[2:])); err == nil && n >= 0 {
			return n, nil
		}
	}
	return 0, api.InvalidParam("Invalid page_token.")
}

func (s *Service) listNodeTypes(ctx context.Context, req *api.Request) (any, error) {
	return map[string]any{"node_types": s.Catalog.NodeTypes}, nil
}

func (s *Service) sparkVersions(ctx context.Context, req *api.Request) (any, error) {
	return map[string]any{"versions": s.Catalog.SparkVersions}, nil
}

func (s *Service) listZones(ctx context.Context, req *api.Request) (any, error) {
	return map[string]any{"zones": []string{"local"}, "default_zone": "local"}, nil
}

var _ = http.StatusOK
