package kubernetes

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/tandemdata/tandem/internal/agent"
	"github.com/tandemdata/tandem/internal/compute/provider"
)

// TestGrowableScratchClaim: with a StorageClass the pod's scratch volume
// is a generic ephemeral claim of the configured size, the agent is told
// it grows, and GrowScratch raises the claim's request, never lowers it,
// and reports a missing claim or Kubernetes' refusal.
func TestGrowableScratchClaim(t *testing.T) {
	ctx := context.Background()
	p, cs := newFake()
	p.Scratch = &Scratch{SizeLimit: resource.MustParse("2Gi"), StorageClass: "fast-expandable"}
	pod, vol := createWithScratch(t, p, cs)
	if vol == nil || vol.Ephemeral == nil || vol.Ephemeral.VolumeClaimTemplate == nil {
		t.Fatalf("scratch volume %+v", vol)
	}
	spec := vol.Ephemeral.VolumeClaimTemplate.Spec
	if *spec.StorageClassName != "fast-expandable" || spec.Resources.Requests.Storage().String() != "2Gi" {
		t.Fatalf("claim template %+v", spec)
	}
	env := map[string]string{}
	for _, e := range pod.Spec.Containers[0].Env {
		env[e.Name] = e.Value
	}
	if env[agent.EnvScratchProvisioned] != "1" || env[agent.EnvScratchGrowable] != "1" {
		t.Fatalf("agent environment %v", env)
	}

	// No claim yet (the ephemeral volume controller makes it).
	if err := p.GrowScratch(ctx, "i-1", 3<<30); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("grow without a claim: %v", err)
	}
	claim := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "tandem-i-1-scratch", Namespace: "tandem"}, Spec: spec}
	if _, err := cs.CoreV1().PersistentVolumeClaims("tandem").Create(ctx, claim, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	request := func() string {
		c, err := cs.CoreV1().PersistentVolumeClaims("tandem").Get(ctx, "tandem-i-1-scratch", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return c.Spec.Resources.Requests.Storage().String()
	}
	for _, c := range []struct {
		bytes int64
		want  string
	}{
		{3 << 30, "3Gi"},
		{3<<30 + 1, "3073Mi"}, // rounded up to a MiB
		{1 << 30, "3073Mi"},   // never lowered
		{3<<30 + 1, "3073Mi"}, // asked again: nothing changes
	} {
		if err := p.GrowScratch(ctx, "i-1", c.bytes); err != nil {
			t.Fatal(err)
		}
		if got := request(); got != c.want {
			t.Fatalf("after GrowScratch(%d): request %s, want %s", c.bytes, got, c.want)
		}
	}

	// A class that does not allow expansion: Kubernetes refuses the patch.
	cs.PrependReactor("patch", "persistentvolumeclaims", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "persistentvolumeclaims"}, "tandem-i-1-scratch",
			errors.New("only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize"))
	})
	err := p.GrowScratch(ctx, "i-1", 8<<30)
	if err == nil || !strings.Contains(err.Error(), "must support resize") {
		t.Fatalf("refused growth: %v", err)
	}

	// A region without a class cannot grow.
	p.Scratch.StorageClass = ""
	if err := p.GrowScratch(ctx, "i-1", 8<<30); err == nil || !strings.Contains(err.Error(), "scratch_storage_class") {
		t.Fatalf("no class: %v", err)
	}
}

func TestParseScratchStorageClass(t *testing.T) {
	s, err := ParseScratch("2Gi", "", "fast")
	if err != nil || s.StorageClass != "fast" {
		t.Fatalf("%+v %v", s, err)
	}
	if _, err := ParseScratch("2Gi", "Memory", "fast"); err == nil {
		t.Fatal("a memory medium with a claim accepted")
	}
}

// createWithScratch creates instance i-1 and returns its pod and the pod's
// scratch volume (nil when it has none).
func createWithScratch(t *testing.T, p *Provider, cs *fake.Clientset) (*corev1.Pod, *corev1.Volume) {
	t.Helper()
	ctx := context.Background()
	if err := p.Create(ctx, provider.Spec{ID: "i-1", NodeType: "tandem.small", Cores: 1, MemoryMB: 2048}); err != nil {
		t.Fatal(err)
	}
	pod, err := cs.CoreV1().Pods("tandem").Get(ctx, "tandem-i-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range pod.Spec.Volumes {
		if pod.Spec.Volumes[i].Name == "scratch" {
			return pod, &pod.Spec.Volumes[i]
		}
	}
	return pod, nil
}
