package kubernetes

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/tandemdata/tandem/internal/agent"
)

// Scratch is the scratch volume of instance pods (local storage
// autoscaling on Kubernetes). An unprivileged pod cannot mount volumes
// itself, so the pod spec provisions the scratch space at its largest
// size up front: an emptyDir with a sizeLimit at the path the agent's
// elastic disk uses, and TANDEM_SCRATCH_PROVISIONED so the agent uses it
// as it is. With Medium "Memory" the limit is the tmpfs's size (ENOSPC
// past it); on disk, the kubelet evicts a pod that exceeds it.
type Scratch struct {
	SizeLimit resource.Quantity
	// Medium is "" (the node's disk) or "Memory".
	Medium corev1.StorageMedium
}

// scratchPath is where the agent's elastic disk lives in a pod.
const scratchPath = workDir + "/disk/scratch"

func (p *Provider) addScratch(pod *corev1.Pod) {
	if p.Scratch == nil || p.Scratch.SizeLimit.IsZero() {
		return
	}
	limit := p.Scratch.SizeLimit.DeepCopy()
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: "scratch",
		VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: p.Scratch.Medium, SizeLimit: &limit}}})
	c := &pod.Spec.Containers[0]
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "scratch", MountPath: scratchPath})
	c.Env = append(c.Env, corev1.EnvVar{Name: agent.EnvScratchProvisioned, Value: "1"})
	if p.Scratch.Medium == "" {
		// Ephemeral storage the scheduler accounts for.
		if c.Resources.Requests == nil {
			c.Resources.Requests = corev1.ResourceList{}
		}
		c.Resources.Requests[corev1.ResourceEphemeralStorage] = limit
	}
}

// ParseScratch reads the scratch volume configuration: a size such as
// "2Gi" ("" for none) and a medium ("" or "Memory").
func ParseScratch(size, medium string) (*Scratch, error) {
	if size == "" {
		return nil, nil
	}
	q, err := resource.ParseQuantity(size)
	if err != nil || q.Sign() <= 0 {
		return nil, fmt.Errorf("compute.kubernetes.scratch_size %q is not a positive quantity such as 2Gi", size)
	}
	switch corev1.StorageMedium(medium) {
	case corev1.StorageMediumDefault, corev1.StorageMediumMemory:
	default:
		return nil, fmt.Errorf("compute.kubernetes.scratch_medium %q must be empty or Memory", medium)
	}
	return &Scratch{SizeLimit: q, Medium: corev1.StorageMedium(medium)}, nil
}
