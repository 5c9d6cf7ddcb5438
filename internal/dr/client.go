package dr

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/tandemdata/tandem/internal/pki"
)

// Client calls a region's disaster-recovery API (and, for the smoke job,
// its Jobs API) with an admin token.
type Client struct {
	URL   string
	Token string
	HTTP  *http.Client
}

// NewClient returns a client of the region at url that trusts caFile.
func NewClient(url, caFile, token string) (*Client, error) {
	pool, err := pki.LoadPool(caFile)
	if err != nil {
		return nil, err
	}
	return &Client{URL: strings.TrimRight(url, "/"), Token: token, HTTP: &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 5 * time.Second,
		ForceAttemptHTTP2:   true,
	}}}, nil
}

// APIError is an error answer of a region.
type APIError struct {
	Status  int
	Code    string `json:"error_code"`
	Message string `json:"message"`
}

func (e *APIError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

func (c *Client) call(ctx context.Context, method, path string, body, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		e := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(b, e) != nil || e.Code == "" {
			e.Message = strings.TrimSpace(string(b))
		}
		return e
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// Status is the region's disaster-recovery status.
func (c *Client) Status(ctx context.Context, assets bool) (Status, error) {
	var s Status
	path := StatusPath
	if assets {
		path += "?assets=true"
	}
	return s, c.call(ctx, http.MethodGet, path, nil, &s)
}

// Role is the region's public role summary (no token needed).
func (c *Client) Role(ctx context.Context) (RoleSummary, error) {
	var s RoleSummary
	return s, c.call(ctx, http.MethodGet, RolePath, nil, &s)
}

// Probe checks that the region answers.
func (c *Client) Probe(ctx context.Context) error {
	_, err := c.Role(ctx)
	return err
}

// Lease takes, renews or releases the failover lease.
func (c *Client) Lease(ctx context.Context, req LeaseRequest) error {
	err := c.call(ctx, http.MethodPost, LeasePath, req, nil)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusConflict {
		holder := ae.Message
		if _, after, ok := strings.Cut(ae.Message, ": "); ok {
			holder = after
		}
		return &LeaseHeldError{Holder: holder}
	}
	return err
}

// Drain starts a planned failover on the leading region.
func (c *Client) Drain(ctx context.Context, req DrainRequest) (DrainResult, error) {
	var r DrainResult
	return r, c.call(ctx, http.MethodPost, DrainPath, req, &r)
}

// Seal closes the region's write gate.
func (c *Client) Seal(ctx context.Context) (SealResult, error) {
	var r SealResult
	return r, c.call(ctx, http.MethodPost, SealPath, map[string]any{}, &r)
}

// Resume calls off a planned failover.
func (c *Client) Resume(ctx context.Context) error {
	return c.call(ctx, http.MethodPost, ResumePath, map[string]any{}, nil)
}

// Promote makes the region lead.
func (c *Client) Promote(ctx context.Context, req PromoteRequest) (PromoteResult, error) {
	var r PromoteResult
	return r, c.call(ctx, http.MethodPost, PromotePath, req, &r)
}

// StoreReport keeps a report in the region.
func (c *Client) StoreReport(ctx context.Context, r Report) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return c.call(ctx, http.MethodPost, ReportsPath, StoredReport{ID: r.ID, Kind: string(r.Kind), Started: r.Started, Report: b}, nil)
}

// Reports lists the reports kept in the region, newest first.
func (c *Client) Reports(ctx context.Context) ([]StoredReport, error) {
	var out struct {
		Reports []StoredReport `json:"reports"`
	}
	return out.Reports, c.call(ctx, http.MethodGet, ReportsPath, nil, &out)
}

// SmokeWait bounds how long Smoke follows its run: a cluster and a Spark
// application start within it on an idle machine, and a failover's
// recovery time counts it.
var SmokeWait = 15 * time.Second

// SmokeNotWaited marks a smoke outcome that was not waited for.
const SmokeNotWaited = "not waited for"

// Smoke creates a one-task job, runs it to its end and deletes it: proof
// that the new active region accepts writes and that its scheduler and
// executor run. A run that ends because the region has no compute still
// proves that; its state says so.
func (c *Client) Smoke(ctx context.Context) (string, error) {
	cluster, err := c.smokeCluster(ctx)
	if err != nil {
		return "", err
	}
	const notebook = "/Shared/tandem-dr-smoke"
	err = c.call(ctx, http.MethodPost, "/api/2.0/workspace/import", map[string]any{
		"path": notebook, "format": "SOURCE", "language": "PYTHON", "overwrite": true,
		"content": base64.StdEncoding.EncodeToString([]byte(smokeNotebook)),
	}, nil)
	if err != nil {
		return "", fmt.Errorf("write the smoke notebook: %w", err)
	}
	var job struct {
		JobID int64 `json:"job_id"`
	}
	err = c.call(ctx, http.MethodPost, "/api/2.2/jobs/create", map[string]any{
		"name": "tandem-dr-smoke",
		"tasks": []map[string]any{{"task_key": "smoke", "new_cluster": cluster,
			"notebook_task": map[string]any{"notebook_path": notebook}}},
	}, &job)
	if err != nil {
		return "", fmt.Errorf("create the smoke job: %w", err)
	}
	defer c.call(context.WithoutCancel(ctx), http.MethodPost, "/api/2.2/jobs/delete", map[string]any{"job_id": job.JobID}, nil)
	var run struct {
		RunID int64 `json:"run_id"`
	}
	if err := c.call(ctx, http.MethodPost, "/api/2.2/jobs/run-now", map[string]any{"job_id": job.JobID}, &run); err != nil {
		return "", fmt.Errorf("run the smoke job: %w", err)
	}
	began := time.Now()
	for {
		var r struct {
			State struct {
				LifeCycleState string `json:"life_cycle_state"`
				ResultState    string `json:"result_state"`
				StateMessage   string `json:"state_message"`
			} `json:"state"`
		}
		if err := c.call(ctx, http.MethodGet, fmt.Sprintf("/api/2.2/jobs/runs/get?run_id=%d", run.RunID), nil, &r); err != nil {
			return "", fmt.Errorf("follow the smoke run: %w", err)
		}
		if time.Since(began) > SmokeWait {
			// The new leader's scheduler took the run and its executor is
			// starting the cluster: that is what verification needs to
			// know in time; the run goes on by itself.
			return fmt.Sprintf("run %d %s after %s (%s)", run.RunID, r.State.LifeCycleState, SmokeWait, SmokeNotWaited), nil
		}
		switch r.State.LifeCycleState {
		case "TERMINATED", "INTERNAL_ERROR", "SKIPPED":
			s := fmt.Sprintf("run %d %s", run.RunID, r.State.LifeCycleState)
			if r.State.ResultState != "" {
				s += " " + r.State.ResultState
			}
			if r.State.StateMessage != "" {
				s += " (" + r.State.StateMessage + ")"
			}
			return s, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("the smoke run %d did not end: %w", run.RunID, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// smokeNotebook is the smoke job's code: a Spark count on the new active
// region's compute.
const smokeNotebook = "# Databricks notebook source\nn = spark.range(1000).count()\ndbutils.notebook.exit(f\"counted {n}\")\n"

// smokeCluster is the smoke job's cluster: one node (no workers) of the
// region's first node type and runtime, so a verification costs one
// instance for a few seconds.
func (c *Client) smokeCluster(ctx context.Context) (map[string]any, error) {
	var versions struct {
		Versions []struct {
			Key string `json:"key"`
		} `json:"versions"`
	}
	if err := c.call(ctx, http.MethodGet, "/api/2.0/clusters/spark-versions", nil, &versions); err != nil {
		return nil, fmt.Errorf("list the runtimes for the smoke job: %w", err)
	}
	var types struct {
		NodeTypes []struct {
			NodeTypeID string `json:"node_type_id"`
		} `json:"node_types"`
	}
	if err := c.call(ctx, http.MethodGet, "/api/2.0/clusters/list-node-types", nil, &types); err != nil {
		return nil, fmt.Errorf("list the node types for the smoke job: %w", err)
	}
	if len(versions.Versions) == 0 || len(types.NodeTypes) == 0 {
		return nil, fmt.Errorf("the region offers no runtime or node type for the smoke job")
	}
	return map[string]any{
		"spark_version": versions.Versions[0].Key, "node_type_id": types.NodeTypes[0].NodeTypeID, "num_workers": 0,
		"spark_conf":  map[string]string{"spark.databricks.cluster.profile": "singleNode"},
		"custom_tags": map[string]string{"ResourceClass": "SingleNode"},
	}, nil
}
