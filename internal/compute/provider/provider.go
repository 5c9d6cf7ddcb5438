// Package provider is the interface between the compute service and what
// runs instances: the local provider (a `tandem agent` process per
// instance on this machine) and the Kubernetes provider (a pod per
// instance). A provider only makes, lists and removes instances; what an
// instance does is told to its agent over the gateway.
package provider

import (
	"context"
	"errors"
)

// ErrNotFound is returned by Delete for an instance the provider does not
// know (callers treat it as already deleted).
var ErrNotFound = errors.New("instance not found")

// Spec is an instance to create.
type Spec struct {
	ID string
	// NodeType with its declared cores and memory.
	NodeType string
	Cores    int
	MemoryMB int
	// ControlURL is the gateway the agent dials.
	ControlURL string
	// The instance's credentials: the region's CA, and the client
	// certificate and key issued for this instance.
	CAPEM, CertPEM, KeyPEM []byte
}

// Instance is an instance a provider runs.
type Instance struct {
	ID       string
	NodeType string
	// Running is false when the provider knows the instance's processes
	// have ended (it is gone but not yet deleted).
	Running bool
}

// Provider makes, lists and removes instances.
type Provider interface {
	// Create starts the instance. It is idempotent: creating an instance
	// that exists does nothing.
	Create(ctx context.Context, spec Spec) error
	// Delete stops the instance and removes what it kept; ErrNotFound if
	// there is no such instance.
	Delete(ctx context.Context, id string) error
	// List returns the instances the provider runs.
	List(ctx context.Context) ([]Instance, error)
}

// ScratchGrower is a provider that can grow an instance's scratch volume
// online (local storage autoscaling where the agent cannot attach volumes
// itself: a Kubernetes pod's claim). The compute service calls it when an
// agent asks for more (wire.DiskStatus.WantBytes).
type ScratchGrower interface {
	// GrowScratch makes the instance's scratch volume at least bytes
	// large. It is idempotent.
	GrowScratch(ctx context.Context, id string, bytes int64) error
}
