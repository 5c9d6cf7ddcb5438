package compute

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/replication"
	"github.com/tandemdata/tandem/internal/store"
)

// Compute in a disaster-recovery pair. Cluster and pool configurations
// replicate; what runs does not:
//
//   - instances and their usage records are the region's own (local kinds):
//     a secondary never inherits its primary's instances, so a RUNNING
//     cluster record that replicates cannot make it think it has nodes;
//   - in a passive region pools keep min_idle_instances 0 and clusters are
//     not started: they read TERMINATED, with termination reason
//     DISASTER_RECOVERY_REPLICATION. The reconciler runs only while the
//     region leads (the disaster-recovery supervisor starts and stops it);
//     the posture is what users of the passive region see;
//   - at promotion pools get their real min_idle_instances back (and the
//     reconciler fills them); clusters come back with the leader's
//     configuration but TERMINATED, as Databricks leaves them after a
//     failover: the runbook or the user starts them (clusters/start, same
//     cluster_id).
func init() {
	store.RegisterLocal(kindInstance, kindUsage)
	replication.RegisterPosture(kindPool, PoolPassivePosture)
	replication.RegisterPosture(kindCluster, ClusterPassivePosture)
	replication.RegisterPromotion(kindCluster, ClusterPassivePosture)
}

// PoolPassivePosture keeps no idle instances in a passive region.
var PoolPassivePosture = replication.SetFields(replication.Field{Path: "min_idle_instances", Value: 0, Create: true})

// FailoverReasonCode is the termination reason of a cluster that was not
// started in a region because the region was a disaster-recovery replica.
const FailoverReasonCode = "DISASTER_RECOVERY_REPLICATION"

// failoverMessage is its explanation (the reason's databricks_error_message).
const failoverMessage = "The cluster is not running in this region: it was running in the region that led before a disaster-recovery failover. Start it again (clusters/start) to run it here."

// ClusterPassivePosture shows a cluster that has (or wants) instances as
// terminated because of the failover; a terminated cluster is left as it
// is. The configuration, the id and the events are untouched.
func ClusterPassivePosture(real json.RawMessage) (json.RawMessage, error) {
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(real))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("document is not a JSON object: %w", err)
	}
	if doc == nil {
		return nil, errors.New("document is null")
	}
	state, _ := doc["state"].(string)
	if state == Terminated || state == Error {
		return real, nil
	}
	reason := TerminationReason{Code: FailoverReasonCode, Type: ReasonSuccess,
		Parameters: map[string]string{"databricks_error_message": failoverMessage}}
	doc["state"] = Terminated
	doc["state_message"] = reasonMessage(reason)
	doc["termination_reason"] = reason
	// The operation in progress belongs to the run in the former leader.
	doc["terminated_time"] = doc["state_since"]
	delete(doc, "op")
	delete(doc, "op_request")
	delete(doc, "op_user")
	delete(doc, "waiting")
	delete(doc, "release_first")
	return json.Marshal(doc)
}

// ReleaseInstances deletes every instance of this region through the
// provider and removes its records (closing its usage): a region that no
// longer leads keeps no instances running, as its clusters read TERMINATED
// once it follows. The disaster-recovery side calls it when the region
// has become passive, when the reconciler (which runs only while the
// region leads) has stopped. It returns how many instances it released.
func (s *Service) ReleaseInstances(ctx context.Context) (int, error) {
	var list []Instance
	err := s.Store.View(ctx, func(tx store.Tx) error {
		return store.ScanPrefix(tx, kindInstance, "", func(_ string, in Instance) error {
			list = append(list, in)
			return nil
		})
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, in := range list {
		if err := s.deleteInstance(ctx, in.ID); err != nil {
			return n, fmt.Errorf("delete instance %s: %w", in.ID, err)
		}
		n++
	}
	if n > 0 {
		s.Log.Warn("released this region's instances: it no longer leads", "instances", n)
	}
	return n, nil
}

// StartFailedOver starts, as clusters/start would on behalf of the system,
// every cluster a failover left terminated (termination reason
// DISASTER_RECOVERY_REPLICATION): the runbook's --start-clusters policy.
// Job clusters are left to their runs. It tries every cluster and returns
// how many it started and the first error.
func (s *Service) StartFailedOver(ctx context.Context) (int, error) {
	var ids []string
	err := s.Store.View(ctx, func(tx store.Tx) error {
		return store.ScanPrefix(tx, kindCluster, "", func(id string, c Cluster) error {
			if c.State == Terminated && c.Reason != nil && c.Reason.Code == FailoverReasonCode && c.Source != SourceJob && !c.PermanentDelete {
				ids = append(ids, id)
			}
			return nil
		})
	})
	if err != nil {
		return 0, err
	}
	n := 0
	var first error
	for _, id := range ids {
		if err := s.startCluster(ctx, principal.SystemPrincipal, id, ""); err != nil {
			if first == nil {
				first = fmt.Errorf("start cluster %s: %w", id, err)
			}
			continue
		}
		n++
	}
	if n > 0 {
		s.Log.Info("started the clusters that ran in the former leading region", "clusters", n)
	}
	return n, first
}
