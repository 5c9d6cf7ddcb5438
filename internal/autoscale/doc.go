// Package autoscale decides how many workers an autoscaling cluster should
// have and which workers to let go.
//
// It is pure decision logic: a Policy reads the cluster's signals (a
// Snapshot per tick, and the History of earlier ticks with the decisions
// taken then) and the time, and returns a Decision. It never reads the clock,
// starts an instance or talks to Spark. The live control loop (compute)
// collects the signals, keeps the History, calls Decide and carries the
// decision out by starting instances and decommissioning workers gracefully;
// the simulator in autoscale/sim does the same against a model of a cluster.
// Both call the very same policies, so what the simulator measures is what
// the live cluster does.
//
// Policies: "optimized" (the default) and "standard" follow Databricks'
// documented behaviour; "static", "spark-dynamic-allocation" and
// "cluster-autoscaler" exist so that the simulator can compare against
// a fixed size and against Spark's and Kubernetes' own rules. The reasoning
// behind every threshold is in docs/autoscaling.md.
package autoscale
