package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tandemdata/tandem/internal/config"
	"github.com/tandemdata/tandem/internal/server"
)

func serverCmd() *cobra.Command {
	var (
		configFile string
		flags      config.Config
	)
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the control plane of one region",
		Long: `Run the control plane of one region: the Databricks-compatible REST API,
the agent gateway and the loops that run clusters, jobs, audit delivery and
replication. TLS is always on; on first start the server creates a local CA
in DATA_DIR/tls/ca.pem that clients trust. If TANDEM_BOOTSTRAP_TOKEN is set on
first start, it becomes an admin personal access token.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(configFile)
			if err != nil {
				return err
			}
			// Flags given on the command line win over the file.
			fs := cmd.Flags()
			if fs.Changed("data-dir") {
				cfg.DataDir = flags.DataDir
			}
			if fs.Changed("listen") {
				cfg.Listen = flags.Listen
			}
			if fs.Changed("region") {
				cfg.Region = flags.Region
			}
			if fs.Changed("store") {
				cfg.Store = flags.Store
			}
			if fs.Changed("primary") {
				cfg.DR.Primary = flags.DR.Primary
			}
			if fs.Changed("peer") {
				cfg.DR.Peer = flags.DR.Peer
			}
			if fs.Changed("peer-ca") {
				cfg.DR.PeerCAFile = flags.DR.PeerCAFile
			}
			log := newLogger(cfg.Log)
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			srv, err := server.New(ctx, cfg, log)
			if err != nil {
				return err
			}
			if err := srv.Start(); err != nil {
				srv.Close()
				return err
			}
			<-ctx.Done()
			log.Info("shutting down")
			return srv.Close()
		},
	}
	d := config.Default()
	cmd.Flags().StringVar(&configFile, "config", "", "configuration file (YAML or JSON)")
	cmd.Flags().StringVar(&flags.DataDir, "data-dir", d.DataDir, "directory for the region's data")
	cmd.Flags().StringVar(&flags.Listen, "listen", d.Listen, "HOST:PORT to serve the API on")
	cmd.Flags().StringVar(&flags.Region, "region", d.Region, "name of this region")
	cmd.Flags().StringVar(&flags.Store, "store", "", "metadata store: empty for SQLite in the data directory, or a postgres:// URL")
	cmd.Flags().StringVar(&flags.DR.Primary, "primary", "", "start as the secondary region of the primary at this https:// URL (disaster recovery)")
	cmd.Flags().StringVar(&flags.DR.Peer, "peer", "", "URL of the secondary region, on a primary (disaster recovery)")
	cmd.Flags().StringVar(&flags.DR.PeerCAFile, "peer-ca", "", "the peer region's CA certificate (its DATA_DIR/tls/ca.pem)")
	return cmd
}

func newLogger(c config.Log) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if strings.EqualFold(c.Format, "json") {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
