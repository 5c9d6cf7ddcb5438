// Package kubernetes is the Kubernetes instance provider: each instance is
// a pod running `tandem agent`, with its configuration and credentials (the
// client certificate issued for the instance, and the region's CA) in a
// secret mounted read-only. Pods expose no port: their agents dial out to
// the control plane. docs/kubernetes.md says how to point a region at a
// cluster.
package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tandemdata/tandem/internal/agent"
	"github.com/tandemdata/tandem/internal/compute/provider"
)

// Labels on every object the provider makes.
const (
	LabelApp      = "app.kubernetes.io/name"
	LabelRegion   = "tandem.dev/region"
	LabelInstance = "tandem.dev/instance"
	LabelNodeType = "tandem.dev/node-type"
	appName       = "tandem-instance"
)

// Paths inside an instance pod.
const (
	configDir = "/etc/tandem/instance"
	workDir   = "/var/lib/tandem/instance"
)

// Provider runs instances as pods.
type Provider struct {
	Client    kubernetes.Interface
	Namespace string
	// Region labels this region's pods, so two regions can share a
	// namespace.
	Region string
	// Image is the instance image: tandem, Java 17 and a Python with
	// pyspark (see docs/kubernetes.md).
	Image string
	// Venv or SparkHome say where pyspark is in the image.
	Venv             string
	SparkHome        string
	ServiceAccount   string
	ImagePullSecrets []string
	NodeSelector     map[string]string
	// Scratch, when set, gives every pod a size-limited scratch volume
	// for enable_elastic_disk clusters (see scratch.go).
	Scratch *Scratch
}

func name(id string) string { return "tandem-" + strings.ToLower(id) }

func (p *Provider) labels(id, nodeType string) map[string]string {
	return map[string]string{LabelApp: appName, LabelRegion: p.Region, LabelInstance: id, LabelNodeType: nodeType}
}

// Create makes the instance's secret and pod; either existing already is
// fine.
func (p *Provider) Create(ctx context.Context, spec provider.Spec) error {
	if p.Image == "" {
		return errors.New("the kubernetes provider needs compute.kubernetes.image")
	}
	cfg := agent.Config{InstanceID: spec.ID, ControlURL: spec.ControlURL, NodeType: spec.NodeType, Cores: spec.Cores,
		MemoryMB: spec.MemoryMB, Venv: p.Venv, SparkHome: p.SparkHome}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	labels := p.labels(spec.ID, spec.NodeType)
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name(spec.ID), Namespace: p.Namespace, Labels: labels},
		Type:       corev1.SecretTypeOpaque,
		Data: map[string][]byte{
			agent.ConfigFile: cfgJSON, agent.CAFile: spec.CAPEM, agent.CertFile: spec.CertPEM, agent.KeyFile: spec.KeyPEM,
		},
	}
	if _, err := p.Client.CoreV1().Secrets(p.Namespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create the secret of %s: %w", spec.ID, err)
	}
	if _, err := p.Client.CoreV1().Pods(p.Namespace).Create(ctx, p.pod(spec, labels), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create the pod of %s: %w", spec.ID, err)
	}
	return nil
}

func (p *Provider) pod(spec provider.Spec, labels map[string]string) *corev1.Pod {
	cpu := resource.NewQuantity(int64(max(spec.Cores, 1)), resource.DecimalSI)
	mem := resource.NewQuantity(int64(max(spec.MemoryMB, 512))<<20, resource.BinarySI)
	readOnly := int32(0o400)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name(spec.ID), Namespace: p.Namespace, Labels: labels},
		Spec: corev1.PodSpec{
			// A dead agent is a lost instance: the control plane replaces
			// it; Kubernetes does not restart it.
			RestartPolicy:      corev1.RestartPolicyNever,
			ServiceAccountName: p.ServiceAccount,
			NodeSelector:       p.NodeSelector,
			// The agent needs no Kubernetes API access.
			AutomountServiceAccountToken: new(bool),
			Containers: []corev1.Container{{
				Name:    "agent",
				Image:   p.Image,
				Command: []string{"tandem", "agent", "--dir", workDir, "--config-dir", configDir},
				Env: []corev1.EnvVar{{
					Name:      "TANDEM_AGENT_HOST",
					ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}},
				}},
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: *cpu, corev1.ResourceMemory: *mem},
					Limits:   corev1.ResourceList{corev1.ResourceMemory: *mem},
				},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "instance", MountPath: configDir, ReadOnly: true},
					{Name: "work", MountPath: workDir},
				},
			}},
			Volumes: []corev1.Volume{
				{Name: "instance", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: name(spec.ID), DefaultMode: &readOnly}}},
				{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			},
		},
	}
	p.addScratch(pod)
	for _, s := range p.ImagePullSecrets {
		pod.Spec.ImagePullSecrets = append(pod.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
	}
	return pod
}

// Delete removes the instance's pod and secret.
func (p *Provider) Delete(ctx context.Context, id string) error {
	grace := int64(10)
	errPod := p.Client.CoreV1().Pods(p.Namespace).Delete(ctx, name(id), metav1.DeleteOptions{GracePeriodSeconds: &grace})
	errSecret := p.Client.CoreV1().Secrets(p.Namespace).Delete(ctx, name(id), metav1.DeleteOptions{})
	switch {
	case apierrors.IsNotFound(errPod) && apierrors.IsNotFound(errSecret):
		return provider.ErrNotFound
	case errPod != nil && !apierrors.IsNotFound(errPod):
		return fmt.Errorf("delete the pod of %s: %w", id, errPod)
	case errSecret != nil && !apierrors.IsNotFound(errSecret):
		return fmt.Errorf("delete the secret of %s: %w", id, errSecret)
	}
	return nil
}

// List returns this region's instance pods; a pod that has ended (or is
// being deleted) is not running.
func (p *Provider) List(ctx context.Context) ([]provider.Instance, error) {
	pods, err := p.Client.CoreV1().Pods(p.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: LabelApp + "=" + appName + "," + LabelRegion + "=" + p.Region})
	if err != nil {
		return nil, fmt.Errorf("list instance pods: %w", err)
	}
	out := make([]provider.Instance, 0, len(pods.Items))
	for _, pod := range pods.Items {
		id := pod.Labels[LabelInstance]
		if id == "" {
			continue
		}
		running := pod.DeletionTimestamp == nil && (pod.Status.Phase == corev1.PodPending || pod.Status.Phase == corev1.PodRunning || pod.Status.Phase == "")
		out = append(out, provider.Instance{ID: id, NodeType: pod.Labels[LabelNodeType], Running: running})
	}
	return out, nil
}
