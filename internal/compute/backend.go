package compute

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/tandemdata/tandem/internal/agent/wire"
	"github.com/tandemdata/tandem/internal/gateway"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/store"
)

// The compute service is the gateway's backend: it says what each
// instance should do and takes the agents' reports.
var _ gateway.Backend = (*Service)(nil)

// Agent checks an agent's certificate: issued for a recorded instance,
// and the latest one issued for it.
func (s *Service) Agent(ctx context.Context, instanceID, serial string) error {
	var in Instance
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		in, err = store.Get[Instance](tx, kindInstance, instanceID)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return gateway.ErrUnknownAgent
	}
	if err != nil {
		return err
	}
	if in.CertSerial == "" || in.CertSerial != serial {
		return gateway.ErrUnknownAgent
	}
	return nil
}

type cachedAssignment struct {
	generation int64
	asg        wire.Assignment
}

// Work returns what an instance should do that its agent does not have
// yet: a newer assignment, the cluster's master (workers), tasks to start
// or cancel.
func (s *Service) Work(ctx context.Context, instanceID string, req wire.PollRequest) (wire.PollResponse, error) {
	var resp wire.PollResponse
	var in Instance
	var tasks []taskRecord
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		in, err = store.Get[Instance](tx, kindInstance, instanceID)
		if err != nil {
			return err
		}
		if in.ClusterID == "" || in.Role != wire.RoleDriver {
			return nil
		}
		return store.ScanPrefix(tx, kindTask, "", func(_ string, t taskRecord) error {
			if t.InstanceID == instanceID && t.State != TaskFinished {
				tasks = append(tasks, t)
			}
			return nil
		})
	})
	if errors.Is(err, store.ErrNotFound) {
		return wire.PollResponse{Exit: true}, nil
	}
	if err != nil {
		return resp, err
	}
	if in.State == InstDeleting {
		return wire.PollResponse{Exit: true}, nil
	}
	if in.Generation != req.Generation {
		asg, err := s.assignmentFor(ctx, in)
		if err != nil {
			return resp, err
		}
		resp.Assignment = &asg
	}
	if in.Role == wire.RoleWorker && in.ClusterID != "" {
		if m := s.masterOf(ctx, in.ClusterID, in.ClusterGen); m != "" && m != req.MasterURL {
			resp.MasterURL = m
		}
	}
	for _, t := range tasks {
		known := slices.Contains(req.Tasks, t.ID)
		switch {
		case t.Cancel && known:
			resp.CancelTasks = append(resp.CancelTasks, t.ID)
		case !t.Cancel && !known:
			resp.StartTasks = append(resp.StartTasks, t.Spec)
		}
	}
	return resp, nil
}

// masterOf returns the Spark master of a cluster's driver at a cluster
// generation, once it is up.
func (s *Service) masterOf(ctx context.Context, clusterID string, gen int64) string {
	var driver Instance
	found := false
	s.Store.View(ctx, func(tx store.Tx) error {
		return store.ScanPrefix(tx, kindInstance, "", func(_ string, in Instance) error {
			if in.ClusterID == clusterID && in.Role == wire.RoleDriver && in.State != InstDeleting {
				driver, found = in, true
				return store.ErrStopScan
			}
			return nil
		})
	})
	if !found || driver.ClusterGen != gen {
		return ""
	}
	ob, ok := s.obs.get(driver.ID)
	if !ok || ob.status.Generation != driver.Generation || ob.status.Phase != wire.PhaseRunning {
		return ""
	}
	return ob.status.MasterURL
}

// assignmentFor builds what an instance must be at its generation: for a
// cluster's node, the cluster's Spark configuration, init scripts
// (global ones first) and secret. Built once per generation.
func (s *Service) assignmentFor(ctx context.Context, in Instance) (wire.Assignment, error) {
	if v, ok := s.asgCache.Load(in.ID); ok {
		if c := v.(cachedAssignment); c.generation == in.Generation {
			return c.asg, nil
		}
	}
	asg := wire.Assignment{Generation: in.Generation, NodeType: in.NodeType}
	if in.ClusterID == "" {
		var p Pool
		s.Store.View(ctx, func(tx store.Tx) error {
			p, _ = store.Get[Pool](tx, kindPool, in.PoolID)
			return nil
		})
		if len(p.PreloadedSparkVersions) > 0 {
			asg.Preload = p.PreloadedSparkVersions[0]
		}
	} else {
		var c Cluster
		err := s.Store.View(ctx, func(tx store.Tx) error {
			var err error
			c, err = store.Get[Cluster](tx, kindCluster, in.ClusterID)
			return err
		})
		if err != nil {
			return asg, fmt.Errorf("read cluster %s: %w", in.ClusterID, err)
		}
		asg.ClusterID, asg.Role, asg.ClusterName = c.ID, in.Role, c.Spec.ClusterName
		asg.JobCluster = c.Source == SourceJob
		if in.Role == wire.RoleDriver && c.Spec.Autoscale == nil && c.Spec.NumWorkers == 0 {
			// A single-node cluster's tasks run Spark in local mode
			// (withLocalMaster), and so does its shared driver.
			asg.SharedDriverMaster = localMaster(in.NodeType, s.Catalog)
		}
		asg.SparkVersion = c.Spec.SparkVersion
		asg.SparkConf = s.sparkConf(c)
		asg.SparkEnv = c.Spec.SparkEnvVars
		asg.LocalDiskEncryption = c.Spec.EnableLocalDiskEncryption
		asg.ElasticDisk = s.elasticDiskFor(ctx, c, in.PoolID)
		asg.InitScripts = s.initScripts(ctx, c)
		if dest, _ := logDestination(c.Spec.ClusterLogConf); dest != "" {
			asg.LogDelivery = true
		}
		if len(c.Secret) > 0 {
			secret, err := s.Secrets.Unwrap(ctx, c.Secret)
			if err != nil {
				return asg, fmt.Errorf("unwrap the secret of cluster %s: %w", c.ID, err)
			}
			asg.AuthSecret = string(secret)
		}
	}
	s.asgCache.Store(in.ID, cachedAssignment{generation: in.Generation, asg: asg})
	return asg, nil
}

// wantsEncryption reports whether a cluster runs with Spark RPC
// authentication and encryption: the workspace setting, or the cluster's
// own spark.authenticate.
func (s *Service) wantsEncryption(spec ClusterSpec) bool {
	return s.IntraClusterEncryption || strings.EqualFold(spec.SparkConf["spark.authenticate"], "true")
}

// sparkConf is the Spark configuration every process of a cluster reads:
// the spec's spark_conf, and what Tandem sets.
func (s *Service) sparkConf(c Cluster) map[string]string {
	conf := map[string]string{}
	for k, v := range c.Spec.SparkConf {
		conf[k] = v
	}
	// The master's REST submission server cannot authenticate with the
	// cluster secret (Spark 4.1 refuses to start with both); drivers
	// submit in client mode through the authenticated RPC path.
	conf["spark.master.rest.enabled"] = "false"
	// The Spark UI is served through the control plane: the master's UI
	// reverse-proxies the workers' and applications' UIs under this path.
	conf["spark.ui.reverseProxy"] = "true"
	conf["spark.ui.reverseProxyUrl"] = s.sparkUIPath(c.ID)
	// Autoscaling clusters scale down by decommissioning workers.
	withDecommission(conf, c.Spec)
	if s.wantsEncryption(c.Spec) {
		conf["spark.authenticate"] = "true"
		conf["spark.network.crypto.enabled"] = "true"
		// AES-GCM is authenticated; Spark's default AES-CTR is not
		// (CVE-2025-55039). No fallback to SASL.
		conf["spark.network.crypto.cipher"] = "AES/GCM/NoPadding"
		conf["spark.network.crypto.saslFallback"] = "false"
		conf["spark.authenticate.enableSaslEncryption"] = "false"
	}
	if c.Spec.EnableLocalDiskEncryption {
		conf["spark.io.encryption.enabled"] = "true"
		conf["spark.io.encryption.keySizeBits"] = "256"
	}
	return conf
}

// sparkUIPath is where the control plane serves a cluster's Spark UI.
func (s *Service) sparkUIPath(clusterID string) string {
	return fmt.Sprintf("/driver-proxy/o/%d/%s/sparkui", s.OrgID, clusterID)
}

// initScripts fetches a cluster's scripts for its nodes: the enabled
// global scripts, then the cluster's own, read with its creator's rights.
// A script that cannot be read is sent without a body and fails the node
// (FAILED_FETCH), as on Databricks.
func (s *Service) initScripts(ctx context.Context, c Cluster) []wire.InitScript {
	var out []wire.InitScript
	if s.GlobalScripts != nil {
		gs, err := s.GlobalScripts.Enabled(ctx)
		if err != nil {
			out = append(out, wire.InitScript{Source: "global", Name: "global init scripts", FetchError: err.Error()})
		}
		for _, g := range gs {
			out = append(out, wire.InitScript{Source: "global", Name: g.Name, Body: g.Body})
		}
	}
	var creator principal.Principal
	if len(c.Spec.InitScripts) > 0 && s.Principals != nil {
		creator, _ = s.Principals.PrincipalByName(ctx, c.Creator)
	}
	for _, sc := range c.Spec.InitScripts {
		kind, dest := sc.kind()
		is := wire.InitScript{Source: "cluster", Kind: kind, Name: dest}
		switch kind {
		case "file":
			is.Path = dest
		default:
			if s.Files == nil {
				is.FetchError = "This region cannot read " + kind + " files."
				break
			}
			body, err := s.Files.ReadFile(ctx, creator, kind, dest)
			if err != nil {
				is.FetchError = fmt.Sprintf("Could not read %s: %v", dest, err)
			}
			is.Body = body
		}
		out = append(out, is)
	}
	return out
}

// Report takes an agent's report: its status and Spark state (kept in
// memory), its log chunks (kept on disk) and finished tasks (stored).
func (s *Service) Report(ctx context.Context, instanceID string, r wire.Report) (wire.ReportResponse, error) {
	var in Instance
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		in, err = store.Get[Instance](tx, kindInstance, instanceID)
		return err
	})
	if err != nil {
		return wire.ReportResponse{}, err
	}
	now := s.Now()
	s.obs.mu.Lock()
	prev, had := s.obs.m[instanceID]
	ob := &observed{seen: now, status: r.Status, spark: r.Spark, tasks: map[string]wire.TaskStatus{}}
	if had && r.Metrics == nil {
		ob.metrics = prev.metrics
	} else {
		ob.metrics = r.Metrics
	}
	for _, t := range r.Tasks {
		ob.tasks[t.ID] = t
	}
	s.obs.m[instanceID] = ob
	s.obs.mu.Unlock()
	if r.Metrics != nil && s.OnNodeMetrics != nil {
		s.OnNodeMetrics(in, *r.Metrics)
	}
	if !had || statusChanged(prev, ob) {
		s.nudge()
		// A driver's master coming up is news for its workers' polls.
		if s.Gateway != nil {
			s.Gateway.Kick()
		}
	}

	resp := wire.ReportResponse{Logs: map[string]int64{}}
	cluster := in.ClusterID
	if cluster == "" {
		cluster = in.LastCluster
	}
	for _, ch := range r.Logs {
		if cluster == "" {
			resp.Logs[ch.Stream] = ch.Offset + int64(len(ch.Data))
			continue
		}
		size, err := s.writeLog(cluster, instanceID, ch.Stream, ch.Offset, ch.Data)
		if err != nil {
			s.Log.Warn("keep agent log", "instance_id", instanceID, "stream", ch.Stream, "err", err)
			continue
		}
		resp.Logs[ch.Stream] = size
	}
	if resp.DiskEvents, err = s.recordDiskEvents(ctx, in, r.Status.DiskEvents); err != nil {
		return resp, err
	}
	if d := r.Status.Disk; d != nil && d.WantBytes > 0 {
		resp.ScratchGranted, resp.ScratchRefused = s.growScratch(ctx, instanceID, d.WantBytes)
	}
	done, err := s.recordTasks(ctx, instanceID, r.Tasks)
	if err != nil {
		return resp, err
	}
	resp.Tasks = done
	return resp, nil
}

// statusChanged reports a change the reconciler acts on.
func statusChanged(a, b *observed) bool {
	if a.status.Generation != b.status.Generation || a.status.Phase != b.status.Phase ||
		a.status.FailureCode != b.status.FailureCode || a.status.MasterURL != b.status.MasterURL ||
		a.status.WorkerID != b.status.WorkerID || len(a.status.InitScripts) != len(b.status.InitScripts) {
		return true
	}
	if (a.spark == nil) != (b.spark == nil) {
		return true
	}
	if a.spark != nil && (!slices.Equal(a.spark.Workers, b.spark.Workers) || len(a.spark.ActiveApps) != len(b.spark.ActiveApps)) {
		return true
	}
	for id, t := range b.tasks {
		if a.tasks[id].State != t.State {
			return true
		}
	}
	return false
}

// TaskPrincipal returns who a task running on the instance acts as.
func (s *Service) TaskPrincipal(ctx context.Context, instanceID, taskID string) (principal.Principal, error) {
	var t taskRecord
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		t, err = store.Get[taskRecord](tx, kindTask, taskID)
		return err
	})
	if err != nil {
		return principal.Principal{}, err
	}
	if t.InstanceID != instanceID || t.State == TaskFinished || t.RunAs == "" {
		return principal.Principal{}, errors.New("no such task on this instance")
	}
	if s.Principals == nil {
		return principal.Principal{}, errors.New("no principals")
	}
	return s.Principals.PrincipalByName(ctx, t.RunAs)
}

// NodeMetrics returns the latest metrics of a cluster's instances (for the
// metrics service), by instance id.
func (s *Service) NodeMetrics(ctx context.Context, clusterID string) (map[string]wire.Metrics, error) {
	var ids []string
	err := s.Store.View(ctx, func(tx store.Tx) error {
		return store.ScanPrefix(tx, kindInstance, "", func(_ string, in Instance) error {
			if in.ClusterID == clusterID {
				ids = append(ids, in.ID)
			}
			return nil
		})
	})
	out := map[string]wire.Metrics{}
	for _, id := range ids {
		if ob, ok := s.obs.get(id); ok && ob.metrics != nil {
			out[id] = *ob.metrics
		}
	}
	return out, err
}

// validLogStream reports whether an agent's stream name is a relative
// path without dot segments.
func validLogStream(name string) bool {
	if name == "" || strings.HasPrefix(name, "/") || len(name) > 512 || path.Clean(name) != name {
		return false
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "." || seg == ".." || seg == "" {
			return false
		}
	}
	return true
}

var _ = time.Second
