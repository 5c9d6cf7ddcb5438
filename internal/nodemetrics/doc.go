// Package nodemetrics keeps the figures every node's agent reports (CPU,
// memory, disk, network, and on a driver the cluster's Spark: master,
// executors, tasks, shuffle, JVM heap) and serves them to Prometheus and to
// charts: a Prometheus text exposition per node, an HTTP service-discovery
// document listing every reporting node, and a short in-memory history per
// node for the history API.
//
// Nodes never listen for the control plane, so the control plane exposes
// their figures on their behalf. The package holds memory only: the latest
// figures and a bounded ring per node (see Service); a control-plane restart
// starts the history over. It is not the region's own /metrics (package
// metrics) and not the compute model: compute hands it each report's
// figures through Observe.
package nodemetrics
