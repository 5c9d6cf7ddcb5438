package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandemdata/tandem/internal/config"
	"github.com/tandemdata/tandem/internal/keyvault"
)

func keyvaultCmd() *cobra.Command {
	var cfg keyvault.Config
	cmd := &cobra.Command{
		Use:   "keyvault",
		Short: "Run Tandem's key vault for customer-managed keys",
		Long: `Run the key vault that holds customer-managed keys (CMK) for storage
accounts: keys with versions, enable/disable, and wrapkey/unwrapkey in Azure
Key Vault's shapes (A256KW). Its keys are sealed by a master key
(TANDEM_KEYVAULT_MASTER_KEY or DATA_DIR/data/master.key); TLS comes from its
own CA (DATA_DIR/tls/ca.pem); callers send the bearer token from
TANDEM_KEYVAULT_TOKEN or DATA_DIR/token.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.Log = newLogger(config.Log{Level: "info", Format: "text"})
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			srv, err := keyvault.Start(cfg)
			if err != nil {
				return err
			}
			tokenFrom := srv.TokenFile
			if tokenFrom == "" {
				tokenFrom = "$" + keyvault.TokenEnv
			}
			fmt.Printf("key vault serving %s (CA %s, token in %s)\n", srv.URL, srv.CAFile, tokenFrom)
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return srv.Close(sctx)
		},
	}
	cmd.Flags().StringVar(&cfg.DataDir, "data-dir", "tandem-keyvault", "directory for the vault's keys, token and CA")
	cmd.Flags().StringVar(&cfg.Listen, "listen", "127.0.0.1:8201", "HOST:PORT to serve on")
	return cmd
}
