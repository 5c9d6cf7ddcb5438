// Package dr is disaster recovery between two regions: which region is
// active, the epoch that makes sure only one ever is (fencing), the write
// gate and API guard of a region that is not, the status and metrics that
// measure the recovery point all the time, and the failover and failback
// runbooks with the orchestrator that executes them and reports how long
// each step took.
//
// Decisions are pure and tested by tables and scripted scenarios
// (Reconcile, CommonSeq, the runbook machines in runbook.go); I/O sits behind
// small interfaces (the peer region, the router, the work a failover drains).
// Moving the change log between regions is internal/replication's job; the
// global endpoint is internal/router.
package dr
