package dr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Deployment describes a deployment for the tandem dr commands: its global
// endpoint, its regions and an admin token. tandem up writes one
// (DIR/deployment.json); docs/dr.md documents the format for deployments
// made by hand. Relative paths are relative to the file.
type Deployment struct {
	// Router is the global endpoint (absent for a deployment without one).
	Router *Endpoint `json:"router,omitempty"`
	// Regions lists the regions; Home marks the region service returns to
	// on failback (the first region if none is marked).
	Regions []DeploymentRegion `json:"regions"`
	// AdminToken is a workspace admin's personal access token; it is the
	// same in every region (tokens replicate). AdminTokenFile names a file
	// holding it instead.
	AdminToken     string `json:"admin_token,omitempty"`
	AdminTokenFile string `json:"admin_token_file,omitempty"`

	path string
}

// Endpoint is a URL and the CA file that signs its certificate.
type Endpoint struct {
	URL    string `json:"url"`
	CAFile string `json:"ca_file"`
	// PID is the process id, when tandem up started it.
	PID int `json:"pid,omitempty"`
}

// DeploymentRegion is one region of a deployment.
type DeploymentRegion struct {
	Name string `json:"name"`
	Endpoint
	Home bool `json:"home,omitempty"`
	// DataDir, ConfigFile and LogFile, when tandem up started the region:
	// restart it with `tandem server --config CONFIG_FILE`.
	DataDir    string `json:"data_dir,omitempty"`
	ConfigFile string `json:"config_file,omitempty"`
	LogFile    string `json:"log_file,omitempty"`
}

// LoadDeployment reads a deployment file.
func LoadDeployment(path string) (*Deployment, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the deployment file: %w", err)
	}
	var d Deployment
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("deployment file %s: %w", path, err)
	}
	d.path = path
	dir := filepath.Dir(path)
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	if d.Router != nil {
		d.Router.CAFile = abs(d.Router.CAFile)
	}
	names := map[string]bool{}
	for i := range d.Regions {
		r := &d.Regions[i]
		if r.Name == "" || r.URL == "" || r.CAFile == "" {
			return nil, fmt.Errorf("deployment file %s: region %d needs a name, a url and a ca_file", path, i+1)
		}
		if names[r.Name] {
			return nil, fmt.Errorf("deployment file %s: two regions are named %s", path, r.Name)
		}
		names[r.Name] = true
		r.CAFile, r.DataDir, r.ConfigFile, r.LogFile = abs(r.CAFile), abs(r.DataDir), abs(r.ConfigFile), abs(r.LogFile)
	}
	if len(d.Regions) != 2 {
		return nil, fmt.Errorf("deployment file %s: a deployment has two regions, not %d", path, len(d.Regions))
	}
	if d.AdminToken == "" && d.AdminTokenFile != "" {
		t, err := os.ReadFile(abs(d.AdminTokenFile))
		if err != nil {
			return nil, fmt.Errorf("admin token file: %w", err)
		}
		d.AdminToken = strings.TrimSpace(string(t))
	}
	if d.AdminToken == "" {
		return nil, fmt.Errorf("deployment file %s has no admin_token (or admin_token_file)", path)
	}
	return &d, nil
}

// Dir is the directory of the deployment file (reports go under it).
func (d *Deployment) Dir() string { return filepath.Dir(d.path) }

// Home is the region service returns to on failback.
func (d *Deployment) Home() string {
	for _, r := range d.Regions {
		if r.Home {
			return r.Name
		}
	}
	return d.Regions[0].Name
}

// Other is the region that is not name.
func (d *Deployment) Other(name string) string {
	if d.Regions[0].Name == name {
		return d.Regions[1].Name
	}
	return d.Regions[0].Name
}

// Clients returns an API client per region.
func (d *Deployment) Clients() (map[string]*Client, error) {
	out := map[string]*Client{}
	for _, r := range d.Regions {
		c, err := NewClient(r.URL, r.CAFile, d.AdminToken)
		if err != nil {
			return nil, fmt.Errorf("region %s: %w", r.Name, err)
		}
		out[r.Name] = c
	}
	return out, nil
}

// Orchestrator returns an orchestrator for the deployment.
func (d *Deployment) Orchestrator() (*Orchestrator, error) {
	clients, err := d.Clients()
	if err != nil {
		return nil, err
	}
	o := &Orchestrator{Regions: map[string]RegionAPI{}}
	for n, c := range clients {
		o.Regions[n] = c
	}
	if d.Router != nil {
		r, err := NewHTTPRouter(d.Router.URL, d.Router.CAFile)
		if err != nil {
			return nil, err
		}
		o.Router = r
	}
	return o, nil
}

// Leader finds the region that leads the highest epoch, from the regions'
// public role summaries; "" when none answers as leader.
func (d *Deployment) Leader(ctx context.Context) (string, error) {
	clients, err := d.Clients()
	if err != nil {
		return "", err
	}
	best, epoch := "", int64(-1)
	var errs []error
	for name, c := range clients {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		s, err := c.Role(cctx)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		if s.Role.Leads() && s.Epoch > epoch {
			best, epoch = name, s.Epoch
		}
	}
	if best == "" {
		return "", fmt.Errorf("no region answers as the leader: %w", errors.Join(errs...))
	}
	return best, nil
}

// DrillReport is the result of a drill: a planned failover and a failback
// on a live deployment, with the recovery point and time they measured.
type DrillReport struct {
	Started  int64   `json:"started"`
	Finished int64   `json:"finished"`
	Outcome  string  `json:"outcome"`
	Error    string  `json:"error,omitempty"`
	Failover *Report `json:"failover,omitempty"`
	Failback *Report `json:"failback,omitempty"`
	// RPO: the changes lost by the drill (0 when it works: both moves are
	// planned) and the recovery point exposure measured just before each
	// move, the replication lag an unplanned failover would have lost.
	LostChanges       int64   `json:"lost_changes"`
	RPOExposedSeconds float64 `json:"rpo_exposed_seconds"`
	// RTO: how long writes were unavailable in each move.
	FailoverRTOSeconds float64 `json:"failover_rto_seconds"`
	FailbackRTOSeconds float64 `json:"failback_rto_seconds"`
}

// Drill runs a planned failover from the leading region to the other, then
// a failback, and measures both.
func Drill(ctx context.Context, d *Deployment, o *Orchestrator, plan Plan) (DrillReport, error) {
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	dr := DrillReport{Started: now().UnixMilli()}
	finish := func(err error) (DrillReport, error) {
		dr.Finished = now().UnixMilli()
		dr.Outcome = "succeeded"
		if err != nil {
			dr.Outcome, dr.Error = "failed", err.Error()
		}
		return dr, err
	}
	leader, err := d.Leader(ctx)
	if err != nil {
		return finish(err)
	}
	other := d.Other(leader)
	fo := plan
	fo.Kind, fo.From, fo.To = PlannedFailover, leader, other
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "drill: planned failover %s -> %s\n", leader, other)
	}
	rep, err := o.Run(ctx, fo)
	dr.Failover = &rep
	dr.LostChanges += rep.LostChanges
	dr.RPOExposedSeconds = rep.LagSecondsAtStart
	dr.FailoverRTOSeconds = rep.RTOSeconds
	if err != nil {
		return finish(fmt.Errorf("failover: %w", err))
	}
	fb := plan
	fb.Kind, fb.From, fb.To = Failback, other, leader
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "drill: failback %s -> %s\n", other, leader)
	}
	rep, err = o.Run(ctx, fb)
	dr.Failback = &rep
	dr.LostChanges += rep.LostChanges
	dr.RPOExposedSeconds = max(dr.RPOExposedSeconds, rep.LagSecondsAtStart)
	dr.FailbackRTOSeconds = rep.RTOSeconds
	if err != nil {
		return finish(fmt.Errorf("failback: %w", err))
	}
	return finish(nil)
}
