package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tandemdata/tandem/internal/agent"
)

func agentCmd() *cobra.Command {
	var dir, configDir string
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent of an instance",
		Long: `Run the node agent of an instance. Instance providers start it; it is not
meant to be run by hand. DIR holds the instance's configuration (agent.json)
and credentials (the client certificate issued for the instance and the
region's CA). The agent dials out to the control plane over mutual TLS;
nothing it runs listens for the control plane.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if configDir == "" {
				configDir = dir
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			cfg, err := agent.LoadConfig(configDir)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
			agent.Version = version
			a, err := agent.New(dir, cfg, agent.Options{Log: log, CredentialsDir: configDir})
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return a.Run(ctx)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".", "the instance's working directory")
	cmd.Flags().StringVar(&configDir, "config-dir", "", "where agent.json and the credentials are, if not in --dir (a mounted secret)")
	return cmd
}
