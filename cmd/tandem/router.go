package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tandemdata/tandem/internal/config"
	"github.com/tandemdata/tandem/internal/dr"
	"github.com/tandemdata/tandem/internal/router"
)

func routerCmd() *cobra.Command {
	var (
		dataDir, listen, deployment string
		upstreams, hosts            []string
	)
	cmd := &cobra.Command{
		Use:   "router",
		Short: "Serve the workspace URL and forward it to the region that leads (the global endpoint)",
		Long: `Serve the workspace URL on one address and forward every call to the region
that leads the highest disaster-recovery epoch, checking both regions several
times a second. Clients keep this URL through a failover. TLS uses a
certificate of the deployment CA in DATA_DIR/tls/ca.pem (made on first start),
which clients trust.

Regions come from a deployment file (--deployment) or from --upstream
NAME=URL,ca=CA_FILE, given once per region.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			var ups []router.Upstream
			if deployment != "" {
				d, err := dr.LoadDeployment(deployment)
				if err != nil {
					return err
				}
				for _, r := range d.Regions {
					ups = append(ups, router.Upstream{Name: r.Name, URL: r.URL, CAFile: r.CAFile})
				}
			}
			for _, u := range upstreams {
				name, rest, ok1 := strings.Cut(u, "=")
				url, ca, ok2 := strings.Cut(rest, ",ca=")
				if !ok1 || !ok2 {
					return fmt.Errorf("--upstream %q: want NAME=URL,ca=CA_FILE", u)
				}
				ups = append(ups, router.Upstream{Name: name, URL: url, CAFile: ca})
			}
			log := newLogger(config.Log{Level: "info"})
			r, err := router.New(router.Config{Regions: ups, Log: log})
			if err != nil {
				return err
			}
			srv, err := router.Listen(r, dataDir, listen, hosts, log)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			srv.Serve()
			log.Info("router serving the workspace URL", "url", srv.URL(), "ca_file", srv.CAFile)
			<-ctx.Done()
			return srv.Close()
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "tandem-router", "directory for the router's TLS certificate and deployment CA")
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8443", "HOST:PORT to serve the workspace URL on")
	cmd.Flags().StringVar(&deployment, "deployment", "", "deployment file naming the regions (deployment.json)")
	cmd.Flags().StringArrayVar(&upstreams, "upstream", nil, "a region, as NAME=URL,ca=CA_FILE (repeat for each region)")
	cmd.Flags().StringArrayVar(&hosts, "host", nil, "extra DNS name or address for the router's certificate")
	return cmd
}
