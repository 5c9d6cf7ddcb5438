package server

import (
	"fmt"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tandemdata/tandem/internal/compute/provider"
	k8sprovider "github.com/tandemdata/tandem/internal/compute/provider/kubernetes"
	"github.com/tandemdata/tandem/internal/config"
)

// newKubernetesProvider builds the Kubernetes instance provider from the
// configuration: a kubeconfig file (and context), or the in-cluster
// service account when the server itself runs in a pod.
func newKubernetesProvider(cfg config.Compute, region string) (provider.Provider, error) {
	k := cfg.Kubernetes
	var rc *rest.Config
	var err error
	if k.Kubeconfig != "" {
		rc, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			&clientcmd.ClientConfigLoadingRules{ExplicitPath: k.Kubeconfig},
			&clientcmd.ConfigOverrides{CurrentContext: k.Context}).ClientConfig()
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes provider: %w", err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes provider: %w", err)
	}
	ns := k.Namespace
	if ns == "" {
		ns = "default"
	}
	p := &k8sprovider.Provider{Client: cs, Namespace: ns, Region: region, Image: k.Image, Venv: k.Venv, SparkHome: k.SparkHome,
		ServiceAccount: k.ServiceAccount, ImagePullSecrets: k.ImagePullSecrets, NodeSelector: k.NodeSelector}
	if p.Scratch, err = k8sprovider.ParseScratch(k.ScratchSize, k.ScratchMedium, k.ScratchStorageClass); err != nil {
		return nil, fmt.Errorf("kubernetes provider: %w", err)
	}
	return p, nil
}
