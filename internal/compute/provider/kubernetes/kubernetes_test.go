package kubernetes

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/tandemdata/tandem/internal/agent"
	"github.com/tandemdata/tandem/internal/compute/provider"
	"github.com/tandemdata/tandem/internal/compute/provider/providertest"
)

func newFake() (*Provider, *fake.Clientset) {
	cs := fake.NewClientset()
	return &Provider{Client: cs, Namespace: "tandem", Region: "primary", Image: "tandem:test", Venv: "/opt/venv"}, cs
}

func TestProviderBehaviour(t *testing.T) {
	providertest.Run(t, func(t *testing.T) provider.Provider { p, _ := newFake(); return p },
		func(p provider.Provider, id string) {
			// The pod's agent exits: Kubernetes marks it Failed.
			kp := p.(*Provider)
			pod, _ := kp.Client.CoreV1().Pods(kp.Namespace).Get(context.Background(), name(id), metav1.GetOptions{})
			pod.Status.Phase = corev1.PodFailed
			kp.Client.CoreV1().Pods(kp.Namespace).UpdateStatus(context.Background(), pod, metav1.UpdateOptions{})
		})
}

// TestInstancePodShape: the pod runs the agent with its credentials from
// a read-only secret, declares the node type's resources, learns its
// address from the downward API, and exposes no port.
func TestInstancePodShape(t *testing.T) {
	p, cs := newFake()
	p.ImagePullSecrets, p.NodeSelector, p.ServiceAccount = []string{"regcred"}, map[string]string{"pool": "spark"}, "tandem-instance"
	ctx := context.Background()
	err := p.Create(ctx, provider.Spec{ID: "i-00ab", NodeType: "tandem.medium", Cores: 2, MemoryMB: 4096,
		ControlURL: "https://tandem.example:8443", CAPEM: []byte("CA"), CertPEM: []byte("CERT"), KeyPEM: []byte("KEY")})
	if err != nil {
		t.Fatal(err)
	}
	sec, err := cs.CoreV1().Secrets("tandem").Get(ctx, "tandem-i-00ab", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(sec.Data[agent.KeyFile]) != "KEY" || string(sec.Data[agent.CertFile]) != "CERT" || string(sec.Data[agent.CAFile]) != "CA" {
		t.Fatalf("secret data: %v", sec.Data)
	}
	cfg := string(sec.Data[agent.ConfigFile])
	for _, want := range []string{`"instance_id":"i-00ab"`, `"control_url":"https://tandem.example:8443"`, `"cores":2`, `"memory_mb":4096`, `"venv":"/opt/venv"`} {
		if !strings.Contains(cfg, want) {
			t.Errorf("agent.json %s lacks %s", cfg, want)
		}
	}
	pod, err := cs.CoreV1().Pods("tandem").Get(ctx, "tandem-i-00ab", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := pod.Spec.Containers[0]
	if pod.Spec.RestartPolicy != corev1.RestartPolicyNever || len(c.Ports) != 0 || c.Image != "tandem:test" ||
		pod.Labels[LabelRegion] != "primary" || pod.Labels[LabelNodeType] != "tandem.medium" ||
		pod.Spec.ImagePullSecrets[0].Name != "regcred" || pod.Spec.NodeSelector["pool"] != "spark" ||
		pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken {
		t.Fatalf("pod: %+v", pod.Spec)
	}
	if c.Resources.Requests.Cpu().Value() != 2 || c.Resources.Limits.Memory().Value() != 4096<<20 {
		t.Fatalf("resources: %+v", c.Resources)
	}
	if c.Env[0].Name != "TANDEM_AGENT_HOST" || c.Env[0].ValueFrom.FieldRef.FieldPath != "status.podIP" {
		t.Fatalf("env: %+v", c.Env)
	}
	if !c.VolumeMounts[0].ReadOnly || pod.Spec.Volumes[0].Secret.SecretName != "tandem-i-00ab" {
		t.Fatalf("credentials volume: %+v %+v", c.VolumeMounts, pod.Spec.Volumes)
	}
	// Another region's pods are not this region's instances.
	other := &Provider{Client: cs, Namespace: "tandem", Region: "secondary", Image: "x"}
	if list, _ := other.List(ctx); len(list) != 0 {
		t.Fatalf("the secondary region lists %v", list)
	}
}

// TestInstancePodScratchVolume: with a scratch size, pods get a
// size-limited emptyDir at the elastic disk's path, and the agent is told
// it is provisioned.
func TestInstancePodScratchVolume(t *testing.T) {
	for _, c := range []struct {
		medium   corev1.StorageMedium
		requests bool
	}{{"", true}, {corev1.StorageMediumMemory, false}} {
		p, cs := newFake()
		p.Scratch = &Scratch{SizeLimit: resource.MustParse("2Gi"), Medium: c.medium}
		pod, vol := createWithScratch(t, p, cs)
		if vol == nil || vol.EmptyDir == nil || vol.EmptyDir.SizeLimit.String() != "2Gi" || vol.EmptyDir.Medium != c.medium {
			t.Fatalf("scratch volume %+v", vol)
		}
		ctr := pod.Spec.Containers[0]
		mounted, told := false, false
		for _, m := range ctr.VolumeMounts {
			mounted = mounted || (m.Name == "scratch" && m.MountPath == "/var/lib/tandem/instance/disk/scratch" && !m.ReadOnly)
		}
		for _, e := range ctr.Env {
			told = told || (e.Name == agent.EnvScratchProvisioned && e.Value == "1")
		}
		_, requested := ctr.Resources.Requests[corev1.ResourceEphemeralStorage]
		if !mounted || !told || requested != c.requests {
			t.Fatalf("medium %q: mounted %v, told %v, ephemeral-storage requested %v", c.medium, mounted, told, requested)
		}
	}
	// Without a scratch size, no volume.
	p, cs := newFake()
	p.Create(context.Background(), provider.Spec{ID: "i-2", NodeType: "tandem.small"})
	pod, _ := cs.CoreV1().Pods("tandem").Get(context.Background(), "tandem-i-2", metav1.GetOptions{})
	for _, v := range pod.Spec.Volumes {
		if v.Name == "scratch" {
			t.Fatal("a scratch volume without a size")
		}
	}
}

func TestParseScratch(t *testing.T) {
	if s, err := ParseScratch("", "", ""); s != nil || err != nil {
		t.Fatalf("empty: %v %v", s, err)
	}
	if s, err := ParseScratch("512Mi", "Memory", ""); err != nil || s.SizeLimit.Value() != 512<<20 || s.Medium != corev1.StorageMediumMemory {
		t.Fatalf("512Mi Memory: %+v %v", s, err)
	}
	for _, bad := range [][2]string{{"lots", ""}, {"-1Gi", ""}, {"1Gi", "HugePages"}} {
		if _, err := ParseScratch(bad[0], bad[1], ""); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
