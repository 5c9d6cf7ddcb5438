package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tandemdata/tandem/internal/agent"
	"github.com/tandemdata/tandem/internal/compute/provider"
)

// Scratch is the scratch volume of instance pods (local storage
// autoscaling on Kubernetes). An unprivileged pod cannot mount volumes
// itself, so the pod spec provisions the scratch space at its largest
// size up front: an emptyDir with a sizeLimit at the path the agent's
// elastic disk uses, and TANDEM_SCRATCH_PROVISIONED so the agent uses it
// as it is. With Medium "Memory" the limit is the tmpfs's size (ENOSPC
// past it); on disk, the kubelet evicts a pod that exceeds it.
//
// With a StorageClass the scratch volume grows instead, as Databricks
// attaches disks: it is a generic ephemeral volume (a PersistentVolumeClaim
// the pod owns, deleted with it) of SizeLimit to begin with, and when the
// agent runs low it asks for more (wire.DiskStatus.WantBytes); the control
// plane raises the claim's request (GrowScratch) and the volume's driver
// grows the filesystem online. The StorageClass must allow volume
// expansion, and its CSI driver online expansion.
type Scratch struct {
	SizeLimit resource.Quantity
	// Medium is "" (the node's disk) or "Memory".
	Medium corev1.StorageMedium
	// StorageClass, when set, makes the volume a growable claim of this
	// class (Medium is then ignored).
	StorageClass string
}

// scratchPath is where the agent's elastic disk lives in a pod.
const scratchPath = workDir + "/disk/scratch"

// scratchVolume is the volume's name in the pod; a generic ephemeral
// volume's claim is named <pod>-<volume>.
const scratchVolume = "scratch"

func scratchClaim(id string) string { return name(id) + "-" + scratchVolume }

var _ provider.ScratchGrower = (*Provider)(nil)

// GrowScratch raises the request of the instance's scratch claim to at
// least bytes (rounded up to a MiB); a claim already that large is left
// alone, so asking again is harmless. The volume's driver grows the
// filesystem; the agent sees it in its free space.
func (p *Provider) GrowScratch(ctx context.Context, id string, bytes int64) error {
	if p.Scratch == nil || p.Scratch.StorageClass == "" {
		return fmt.Errorf("the scratch volumes of this region cannot grow (compute.kubernetes.scratch_storage_class is not set)")
	}
	pvcs := p.Client.CoreV1().PersistentVolumeClaims(p.Namespace)
	claim, err := pvcs.Get(ctx, scratchClaim(id), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("instance %s has no scratch claim %s: %w", id, scratchClaim(id), provider.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("read the scratch claim of %s: %w", id, err)
	}
	want := resource.NewQuantity((bytes+(1<<20)-1)>>20<<20, resource.BinarySI)
	if cur, ok := claim.Spec.Resources.Requests[corev1.ResourceStorage]; ok && cur.Cmp(*want) >= 0 {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"resources": map[string]any{
		"requests": map[string]string{string(corev1.ResourceStorage): want.String()}}}})
	if err != nil {
		return err
	}
	if _, err := pvcs.Patch(ctx, claim.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		// A class without allowVolumeExpansion is refused here, with
		// Kubernetes' own reason.
		return fmt.Errorf("grow the scratch claim of %s to %s: %w", id, want, err)
	}
	return nil
}

func (p *Provider) addScratch(pod *corev1.Pod) {
	if p.Scratch == nil || p.Scratch.SizeLimit.IsZero() {
		return
	}
	limit := p.Scratch.SizeLimit.DeepCopy()
	c := &pod.Spec.Containers[0]
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: scratchVolume, MountPath: scratchPath})
	c.Env = append(c.Env, corev1.EnvVar{Name: agent.EnvScratchProvisioned, Value: "1"})
	if sc := p.Scratch.StorageClass; sc != "" {
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: scratchVolume,
			VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{
				VolumeClaimTemplate: &corev1.PersistentVolumeClaimTemplate{
					ObjectMeta: metav1.ObjectMeta{Labels: pod.Labels},
					Spec: corev1.PersistentVolumeClaimSpec{
						AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
						StorageClassName: &sc,
						Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: limit}},
					},
				}}}})
		c.Env = append(c.Env, corev1.EnvVar{Name: agent.EnvScratchGrowable, Value: "1"})
		return
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: scratchVolume,
		VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: p.Scratch.Medium, SizeLimit: &limit}}})
	if p.Scratch.Medium == "" {
		// Ephemeral storage the scheduler accounts for.
		if c.Resources.Requests == nil {
			c.Resources.Requests = corev1.ResourceList{}
		}
		c.Resources.Requests[corev1.ResourceEphemeralStorage] = limit
	}
}

// ParseScratch reads the scratch volume configuration: a size such as
// "2Gi" ("" for none), a medium ("" or "Memory") and a StorageClass that
// makes the volume growable ("" for a fixed emptyDir).
func ParseScratch(size, medium, storageClass string) (*Scratch, error) {
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
	if storageClass != "" && medium != "" {
		return nil, fmt.Errorf("compute.kubernetes.scratch_medium %q and scratch_storage_class %q: a growable claim has no medium", medium, storageClass)
	}
	return &Scratch{SizeLimit: q, Medium: corev1.StorageMedium(medium), StorageClass: storageClass}, nil
}
