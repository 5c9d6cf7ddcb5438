package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/tandemdata/tandem/internal/compute"
	"github.com/tandemdata/tandem/internal/compute/provider"
	"github.com/tandemdata/tandem/internal/compute/provider/local"
	"github.com/tandemdata/tandem/internal/gateway"
	"github.com/tandemdata/tandem/internal/initscripts"
	"github.com/tandemdata/tandem/internal/principal"
)

// buildCompute makes the compute service and the agent gateway.
func (s *Server) buildCompute(orgID int64) error {
	cc := s.cfg.Compute
	heartbeat := 2 * time.Second
	if cc.HeartbeatSeconds > 0 {
		heartbeat = time.Duration(cc.HeartbeatSeconds * float64(time.Second))
	}
	s.Gateway = &gateway.Gateway{Log: s.log.With("component", "gateway"), HeartbeatEvery: heartbeat, API: s.mux}
	kek, err := s.Keys.KEK("compute-cluster-secrets")
	if err != nil {
		return err
	}
	prov, err := s.instanceProvider()
	if err != nil {
		return err
	}
	s.Compute = &compute.Service{
		Store: s.Store, Perms: s.Perms, Log: s.log.With("component", "compute"), Audit: s.Diagnostics.Auditor(),
		ResourceID: s.cfg.ResourceID(), OrgID: orgID, Provider: prov, Gateway: s.Gateway, CA: s.CA, CAPEM: s.CA.CertPEM,
		ControlURL: cc.ControlURL, Secrets: kek,
		GlobalScripts: globalScripts{s.InitScripts}, Files: scriptFiles{s}, Principals: principals{s},
		Catalog: compute.Catalog{NodeTypes: compute.DefaultNodeTypes, SparkVersions: compute.SparkVersions(sparkVersion(cc.Venv)),
			MaxWorkers: cc.MaxWorkers},
		IntraClusterEncryption: cc.IntraClusterEncryption,
		LogDir:                 filepath.Join(s.cfg.DataDir, "compute", "logs"),
		LogSink:                s.DBFS,
		LostAfter:              3*heartbeat + time.Second,
	}
	if s.Compute.Rates, err = usageRates(s.Compute.Catalog.NodeTypes, cc.Usage); err != nil {
		return err
	}
	s.Compute.ElasticDisk = elasticDisk(cc.ElasticDisk)
	s.Compute.Init()
	s.Gateway.Backend = s.Compute
	return nil
}

// instanceProvider is the configured instance provider.
func (s *Server) instanceProvider() (provider.Provider, error) {
	cc := s.cfg.Compute
	switch cc.Provider {
	case "local":
		p := &local.Provider{Dir: filepath.Join(s.cfg.DataDir, "instances"), Venv: cc.Venv}
		if cc.AgentBinary != "" {
			p.Command = []string{cc.AgentBinary, "agent"}
		} else {
			// Without one, clusters fail to launch with the error; the rest
			// of the region works.
			p.Command, p.CommandErr = local.AgentCommand()
		}
		return p, nil
	case "kubernetes":
		return newKubernetesProvider(s.cfg.Compute, s.cfg.Region)
	}
	return nil, fmt.Errorf("unknown compute provider %q", cc.Provider)
}

var versionLine = regexp.MustCompile(`__version__(?:: str)?\s*=\s*"([^"]+)"`)

// sparkVersion reads the Apache Spark version of the virtualenv's pyspark.
func sparkVersion(venv string) string {
	matches, _ := filepath.Glob(filepath.Join(venv, "lib", "python3*", "site-packages", "pyspark", "version.py"))
	for _, m := range matches {
		if b, err := os.ReadFile(m); err == nil {
			if sm := versionLine.FindSubmatch(b); sm != nil {
				return string(sm[1])
			}
		}
	}
	return "4.1.4"
}

type globalScripts struct{ svc *initscripts.Service }

func (g globalScripts) Enabled(ctx context.Context) ([]compute.Script, error) {
	list, err := g.svc.Enabled(ctx)
	out := make([]compute.Script, 0, len(list))
	for _, sc := range list {
		out = append(out, compute.Script{Name: sc.Name, Body: sc.Content})
	}
	return out, err
}

// maxScript bounds a cluster init script read from the workspace or DBFS.
const maxScript = 1 << 20

type scriptFiles struct{ s *Server }

func (f scriptFiles) ReadFile(ctx context.Context, p principal.Principal, kind, path string) ([]byte, error) {
	switch kind {
	case "workspace":
		_, b, err := f.s.Workspace.ReadFile(ctx, p, path)
		return b, err
	case "dbfs":
		return f.s.DBFS.ReadFile(ctx, path, maxScript)
	}
	return nil, fmt.Errorf("%s init scripts are not supported", kind)
}

type principals struct{ s *Server }

func (pr principals) PrincipalByName(ctx context.Context, name string) (principal.Principal, error) {
	for _, kind := range []string{"user", "service_principal"} {
		id, _, err := pr.s.Identity.LookupPrincipal(ctx, kind, name)
		if err == nil {
			return pr.s.Identity.Resolve(ctx, id)
		}
	}
	return principal.Principal{}, errors.New("no user or service principal named " + name)
}

// taskSources reads job tasks' notebooks and files for the compute
// service, with the rights of the principal the task runs as.
type taskSources struct{ s *Server }

func (t taskSources) Notebook(ctx context.Context, p principal.Principal, path string) ([]byte, string, error) {
	o, b, err := t.s.Workspace.ReadFile(ctx, p, path)
	if err != nil {
		return nil, "", err
	}
	if o.ObjectType != "NOTEBOOK" {
		return nil, "", fmt.Errorf("%s is not a notebook", path)
	}
	return b, o.Language, nil
}

func (t taskSources) File(ctx context.Context, p principal.Principal, path string) ([]byte, error) {
	if strings.HasPrefix(path, "dbfs:") {
		return t.s.DBFS.ReadFile(ctx, path, maxTaskFile)
	}
	_, b, err := t.s.Workspace.ReadFile(ctx, p, path)
	return b, err
}

// maxTaskFile bounds a task's Python or SQL file.
const maxTaskFile = 16 << 20
