package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandemdata/tandem/internal/atomicfile"
	"github.com/tandemdata/tandem/internal/config"
	"github.com/tandemdata/tandem/internal/dr"
	"github.com/tandemdata/tandem/internal/identity"
	"github.com/tandemdata/tandem/internal/pki"
	"github.com/tandemdata/tandem/internal/proc"
)

func upCmd() *cobra.Command {
	var dataDir, listen, rpo string
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start a complete local deployment: the global endpoint and a primary and a secondary region",
		Long: `Start a complete local deployment on loopback: the router that serves the
workspace URL, a primary region and a secondary region that follows it. It
writes DATA_DIR/deployment.json (the router URL, each region's URL and CA file,
an admin token) for the tandem dr commands, prints how to point the SDKs and
CLI at the workspace URL, and runs until interrupted. Running it again on the
same directory starts the same deployment again; each region keeps the role
it had.

The router listens on --listen and the regions on the next two ports (all on
free ports when the port is 0).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return up(cmd.Context(), dataDir, listen, rpo)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "tandem-deployment", "directory for the deployment (regions, router, deployment.json)")
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8443", "HOST:PORT of the workspace URL; the regions take the next two ports")
	cmd.Flags().StringVar(&rpo, "rpo", "60s", "recovery point objective: a replication lag above it raises an alert")
	return cmd
}

// upRegion is a region tandem up runs.
type upRegion struct {
	name, addr, dir string
	peer            string
}

func up(ctx context.Context, dataDir, listen, rpo string) error {
	dir, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	depPath := filepath.Join(dir, "deployment.json")
	d, err := dr.LoadDeployment(depPath)
	if errors.Is(err, os.ErrNotExist) {
		d, err = newDeployment(dir, listen, rpo)
	}
	if err != nil {
		return err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	var (
		mu       sync.Mutex
		children []*proc.Process
		stopping bool
		wg       sync.WaitGroup
	)
	defer func() {
		mu.Lock()
		stopping = true
		cs := append([]*proc.Process(nil), children...)
		mu.Unlock()
		for i := len(cs) - 1; i >= 0; i-- {
			cs[i].Stop(15 * time.Second)
		}
		wg.Wait()
	}()
	start := func(name string, logFile string, args ...string) (*proc.Process, error) {
		lf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, err
		}
		p, err := proc.Start(proc.Spec{Path: bin, Args: args, Stdout: lf, Stderr: lf, Env: []string{"TANDEM_BOOTSTRAP_TOKEN=" + d.AdminToken}})
		if err != nil {
			lf.Close()
			return nil, err
		}
		mu.Lock()
		children = append(children, p)
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-p.Done()
			lf.Close()
			mu.Lock()
			quiet := stopping
			mu.Unlock()
			if !quiet {
				fmt.Fprintf(os.Stderr, "tandem up: %s (pid %d) exited (%v); its log is %s\n", name, p.Pid(), p.Err(), logFile)
			}
		}()
		return p, nil
	}

	for i := range d.Regions {
		r := &d.Regions[i]
		p, err := start(r.Name, r.LogFile, "server", "--config", r.ConfigFile)
		if err != nil {
			return err
		}
		r.PID = p.Pid()
		if err := waitHealthy(ctx, r.URL+"/healthz", r.CAFile, p, 2*time.Minute); err != nil {
			return fmt.Errorf("region %s did not start: %w (see %s)", r.Name, err, r.LogFile)
		}
	}
	routerDir := filepath.Join(dir, "router")
	routerLog := filepath.Join(routerDir, "router.log")
	p, err := start("router", routerLog, "router", "--data-dir", routerDir, "--listen", strings.TrimPrefix(d.Router.URL, "https://"), "--deployment", depPath)
	if err != nil {
		return err
	}
	d.Router.PID = p.Pid()
	if err := waitHealthy(ctx, d.Router.URL+dr.RouterStatusPath, d.Router.CAFile, p, time.Minute); err != nil {
		return fmt.Errorf("the router did not start: %w (see %s)", err, routerLog)
	}
	if err := writeDeployment(depPath, d); err != nil {
		return err
	}
	leader, _ := d.Leader(ctx)
	printUp(dir, depPath, d, leader)
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "tandem up: stopping")
	return nil
}

// newDeployment lays out a new deployment in dir: both regions' CAs and the
// deployment CA first (each region is configured with its peer's CA file),
// the regions' configuration files, the admin token.
func newDeployment(dir, listen, rpo string) (*dr.Deployment, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("--listen %q is not HOST:PORT", listen)
	}
	var addrs [3]string
	if port == "0" {
		for i := range addrs {
			if addrs[i], err = freeAddr(host); err != nil {
				return nil, err
			}
		}
	} else {
		n, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("--listen %q: bad port", listen)
		}
		for i := range addrs {
			addrs[i] = net.JoinHostPort(host, strconv.Itoa(n+i))
		}
	}
	token := os.Getenv("TANDEM_BOOTSTRAP_TOKEN")
	if token == "" {
		token = identity.NewTokenValue()
	}
	regions := []upRegion{
		{name: "primary", addr: addrs[1], dir: filepath.Join(dir, "primary")},
		{name: "secondary", addr: addrs[2], dir: filepath.Join(dir, "secondary")},
	}
	for _, r := range regions {
		if _, err := pki.LoadOrCreateCA(filepath.Join(r.dir, "tls"), "Tandem CA "+r.name); err != nil {
			return nil, err
		}
	}
	routerDir := filepath.Join(dir, "router")
	if _, err := pki.LoadOrCreateCA(filepath.Join(routerDir, "tls"), "Tandem deployment CA"); err != nil {
		return nil, err
	}
	routerURL := "https://" + addrs[0]
	routerCA := filepath.Join(routerDir, "tls", pki.CAFile)
	d := &dr.Deployment{Router: &dr.Endpoint{URL: routerURL, CAFile: routerCA}, AdminToken: token}
	for i, r := range regions {
		peer := regions[1-i]
		cfg := config.Default()
		cfg.DataDir, cfg.Listen, cfg.Region = r.dir, r.addr, r.name
		cfg.DR = config.DR{PeerCAFile: filepath.Join(peer.dir, "tls", pki.CAFile), RPO: rpo, Router: routerURL, RouterCAFile: routerCA}
		if i == 0 {
			cfg.DR.Peer = "https://" + peer.addr
		} else {
			cfg.DR.Primary = "https://" + peer.addr
		}
		b, err := json.MarshalIndent(cfg, "", "  ")
		if err != nil {
			return nil, err
		}
		cfgFile := filepath.Join(r.dir, "tandem.json")
		if err := atomicfile.Write(cfgFile, b, 0o600); err != nil {
			return nil, err
		}
		d.Regions = append(d.Regions, dr.DeploymentRegion{Name: r.name, Endpoint: dr.Endpoint{URL: "https://" + r.addr, CAFile: filepath.Join(r.dir, "tls", pki.CAFile)},
			Home: i == 0, DataDir: r.dir, ConfigFile: cfgFile, LogFile: filepath.Join(r.dir, "server.log")})
	}
	if err := writeDeployment(filepath.Join(dir, "deployment.json"), d); err != nil {
		return nil, err
	}
	return dr.LoadDeployment(filepath.Join(dir, "deployment.json"))
}

func writeDeployment(path string, d *dr.Deployment) error {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	// It holds an admin token.
	return atomicfile.Write(path, append(b, '\n'), 0o600)
}

func freeAddr(host string) (string, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitHealthy polls url until it answers 200, the process exits or the
// time is up.
func waitHealthy(ctx context.Context, url, caFile string, p *proc.Process, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-p.Done():
			return fmt.Errorf("it exited: %v", p.Err())
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if pool, err := pki.LoadPool(caFile); err == nil {
			client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
			if resp, err := client.Get(url); err == nil {
				resp.Body.Close()
				client.CloseIdleConnections()
				if resp.StatusCode == http.StatusOK {
					if !strings.HasSuffix(url, dr.RouterStatusPath) {
						return nil
					}
					var rs dr.RouterStatus
					if r2, err := client.Get(url); err == nil {
						json.NewDecoder(r2.Body).Decode(&rs)
						r2.Body.Close()
						if rs.ActiveRegion != "" {
							return nil
						}
					}
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("no answer from %s within %s", url, limit)
}

func printUp(dir, depPath string, d *dr.Deployment, leader string) {
	ca := d.Router.CAFile
	fmt.Printf("Tandem is up: a global endpoint and two regions (data in %s).\n\n", dir)
	fmt.Printf("  %-14s %s   (router; clients trust %s)\n", "workspace URL", d.Router.URL, ca)
	for _, r := range d.Regions {
		role := "follows " + leader
		if r.Name == leader {
			role = "active"
		}
		fmt.Printf("  %-14s %s   %s (pid %d, log %s)\n", r.Name, r.URL, role, r.PID, r.LogFile)
	}
	fmt.Printf(`
Point the Databricks SDKs and CLI at the workspace URL:

  export DATABRICKS_HOST=%s
  export DATABRICKS_TOKEN=%s
  export SSL_CERT_FILE=%s REQUESTS_CA_BUNDLE=%s

Try a failover; the workspace URL stays the same:

  tandem dr status   --deployment %[5]s
  tandem dr failover --planned --deployment %[5]s
  tandem dr failback --deployment %[5]s
  tandem dr drill    --deployment %[5]s

or kill -9 the active region and run tandem dr failover --unplanned; restart
it afterwards with tandem server --config <its config_file in %[5]s> and watch
it come back fenced. Ctrl-C stops everything.
`, d.Router.URL, d.AdminToken, ca, ca, depPath)
}
