package nodemetrics

import (
	"bytes"
	"fmt"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/proto"
)

// TextFormat is the content type of the exposition.
var TextFormat = expfmt.NewFormat(expfmt.TypeTextPlain)

// exposition writes the nodes' figures in Prometheus text format: every
// series once, with each node's values under it, labelled with the
// node's cluster_id, instance_id, role and node_type. Series without a
// value are left out.
func exposition(nodes []current) ([]byte, error) {
	fams := map[string]*dto.MetricFamily{}
	var order []string
	add := func(d def, labels []*dto.LabelPair, v float64) {
		f, ok := fams[d.Name]
		if !ok {
			t := dto.MetricType_GAUGE
			if d.Type == counter {
				t = dto.MetricType_COUNTER
			}
			f = &dto.MetricFamily{Name: proto.String(d.Name), Help: proto.String(d.Help), Type: t.Enum()}
			fams[d.Name] = f
			order = append(order, d.Name)
		}
		m := &dto.Metric{Label: labels}
		if d.Type == counter {
			m.Counter = &dto.Counter{Value: proto.Float64(v)}
		} else {
			m.Gauge = &dto.Gauge{Value: proto.Float64(v)}
		}
		f.Metric = append(f.Metric, m)
	}
	// Families come out in catalog order: the loops below walk it.
	for _, d := range nodeDefs {
		for _, n := range nodes {
			add(d.def, nodeLabels(n.node), d.value(n.latest))
		}
	}
	for _, n := range nodes {
		add(ageDef, nodeLabels(n.node), n.age.Seconds())
	}
	for _, d := range sparkDefs {
		for _, n := range nodes {
			for _, s := range n.spark {
				if sparkDefs[s.def].Name != d.Name {
					continue
				}
				labels := nodeLabels(n.node)
				for i, name := range d.labels {
					labels = append(labels, &dto.LabelPair{Name: proto.String(name), Value: proto.String(s.labels[i])})
				}
				add(d.def, labels, s.Value)
			}
		}
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, TextFormat)
	for _, name := range order {
		if err := enc.Encode(fams[name]); err != nil {
			return nil, fmt.Errorf("encode %s: %w", name, err)
		}
	}
	return buf.Bytes(), nil
}

// nodeLabels are the labels every series of a node carries.
func nodeLabels(n Node) []*dto.LabelPair {
	return []*dto.LabelPair{
		{Name: proto.String("cluster_id"), Value: proto.String(n.ClusterID)},
		{Name: proto.String("instance_id"), Value: proto.String(n.InstanceID)},
		{Name: proto.String("node_type"), Value: proto.String(n.NodeType)},
		{Name: proto.String("role"), Value: proto.String(n.role())},
	}
}
