package dr

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/tandemdata/tandem/internal/pki"
)

// RouterStatusPath is where the router (tandem router) tells its view.
const RouterStatusPath = "/tandem/router/status"

// RouterStatus is the router's view of the regions.
type RouterStatus struct {
	ActiveRegion string           `json:"active_region"`
	ActiveURL    string           `json:"active_url"`
	Epoch        int64            `json:"epoch"`
	Regions      []RouterUpstream `json:"regions"`
	// Switches counts the times the active region changed since start.
	Switches int `json:"switches"`
}

// RouterUpstream is the router's view of one region.
type RouterUpstream struct {
	Name      string `json:"name"`
	URL       string `json:"url"`
	Healthy   bool   `json:"healthy"`
	Role      Role   `json:"role,omitempty"`
	Epoch     int64  `json:"epoch,omitempty"`
	Error     string `json:"error,omitempty"`
	CheckedAt int64  `json:"checked_at,omitempty"`
}

// HTTPRouter reads a router's view over HTTPS.
type HTTPRouter struct {
	URL    string
	client *http.Client
}

// NewHTTPRouter returns a RouterView of the router at url, trusting caFile.
func NewHTTPRouter(url, caFile string) (*HTTPRouter, error) {
	pool, err := pki.LoadPool(caFile)
	if err != nil {
		return nil, fmt.Errorf("router CA: %w", err)
	}
	return &HTTPRouter{URL: strings.TrimRight(url, "/"), client: &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
		Timeout:   5 * time.Second,
	}}, nil
}

// Status returns the router's whole view.
func (h *HTTPRouter) Status(ctx context.Context) (RouterStatus, error) {
	var rs RouterStatus
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL+RouterStatusPath, nil)
	if err != nil {
		return rs, err
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return rs, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return rs, err
	}
	if resp.StatusCode != http.StatusOK {
		return rs, fmt.Errorf("router status: %d %s", resp.StatusCode, b)
	}
	return rs, json.Unmarshal(b, &rs)
}

// View is the router's epoch and active region.
func (h *HTTPRouter) View(ctx context.Context) (*View, error) {
	rs, err := h.Status(ctx)
	if err != nil {
		return nil, err
	}
	return &View{Epoch: rs.Epoch, Active: rs.ActiveRegion}, nil
}
