package compute

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

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
