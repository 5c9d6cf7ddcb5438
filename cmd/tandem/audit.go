package main

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/tandemdata/tandem/internal/audit/digest"
	"github.com/tandemdata/tandem/internal/config"
	"github.com/tandemdata/tandem/internal/server"
	"github.com/tandemdata/tandem/internal/storage"
)

func auditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Work with delivered audit logs"}
	cmd.AddCommand(auditVerifyCmd())
	return cmd
}

func auditVerifyCmd() *cobra.Command {
	var dir, dataDir, configFile, publicKey string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "verify (--data-dir DATA_DIR | --dir LOGS_DIR) [--public-key FILE]",
		Short: "Check the digest chains of audit logs delivered to a storage account",
		Long: `Check the digest chains that seal the audit logs delivered to a storage
account: every digest's Ed25519 signature, the link to the previous digest,
and that every log file still starts with the bytes its digests hashed.
Names every missing or altered file and digest; exits 1 if there is one.

--data-dir reads the logs from a region's storage account through its
encryption and copies (the region's configuration file with --config if it
is not the default one; the server may be running). --dir reads them from a
directory: the account's logs exported or downloaded as plain files.
--public-key is the region's exported key (DATA_DIR/audit/digest-key.pub.pem);
without it the key published in the account is used, which catches accidents
but not someone who could also replace that key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if (dir == "") == (dataDir == "") {
				return errors.New("give one of --data-dir and --dir")
			}
			var pub ed25519.PublicKey
			if publicKey != "" {
				b, err := os.ReadFile(publicKey)
				if err != nil {
					return err
				}
				if pub, err = digest.ParsePublicKey(b); err != nil {
					return fmt.Errorf("%s: %w", publicKey, err)
				}
			}
			var fsys fs.FS
			if dir != "" {
				fsys = os.DirFS(dir)
			} else {
				cfg, err := config.Load(configFile)
				if err != nil {
					return err
				}
				cfg.DataDir = dataDir
				acc, closeAcc, err := server.OpenStorage(cmd.Context(), cfg, true)
				if err != nil {
					return fmt.Errorf("open the storage account in %s: %w", dataDir, err)
				}
				defer closeAcc()
				fsys = storage.FS(cmd.Context(), acc)
			}
			rep, err := digest.Verify(fsys, pub)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				enc.Encode(rep)
			} else {
				if pub == nil {
					fmt.Fprintln(out, "warning: no --public-key given; checked against the key published in the account")
				}
				for _, c := range rep.Chains {
					fmt.Fprintf(out, "chain %s: %d digests from %s to %s sealing %d log files\n", c.Name, c.Digests, c.First, c.Last, c.Files)
				}
				for _, p := range rep.Problems {
					fmt.Fprintln(out, "PROBLEM", p.String())
				}
				if len(rep.Unsealed) > 0 {
					fmt.Fprintf(out, "%d log files have records not sealed yet (written since the last digest)\n", len(rep.Unsealed))
				}
				if rep.OK() {
					fmt.Fprintln(out, "OK: no log file or digest is missing or altered")
				}
			}
			if !rep.OK() {
				cmd.SilenceErrors = true
				return fmt.Errorf("%d problems found", len(rep.Problems))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory holding the logs as plain files")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "a region's data directory: read its storage account")
	cmd.Flags().StringVar(&configFile, "config", "", "the region's configuration file (with --data-dir)")
	cmd.Flags().StringVar(&publicKey, "public-key", "", "the region's digest public key (PEM)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}
