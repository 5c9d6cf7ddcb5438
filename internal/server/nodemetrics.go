package server

import (
	"github.com/tandemdata/tandem/internal/agent/wire"
	"github.com/tandemdata/tandem/internal/compute"
	"github.com/tandemdata/tandem/internal/nodemetrics"
)

// buildNodeMetrics makes the node metrics service and hands it the
// figures of every agent report.
func (s *Server) buildNodeMetrics() {
	s.NodeMetrics = &nodemetrics.Service{Access: s.Compute}
	s.Compute.OnNodeMetrics = func(in compute.Instance, m wire.Metrics) {
		s.NodeMetrics.Observe(nodemetrics.Node{InstanceID: in.ID, ClusterID: in.ClusterID, Role: in.Role, NodeType: in.NodeType}, m)
	}
}
