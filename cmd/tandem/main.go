// Command tandem is Tandem's single binary: the control plane of a region
// (tandem server), the node agent (tandem agent) and the tools that act on
// a deployment. This file only parses flags and wires packages together.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	root := &cobra.Command{
		Use:           "tandem",
		Short:         "Tandem: Databricks-style workspaces on your own machines",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serverCmd(), agentCmd(), routerCmd(), upCmd(), drCmd(), auditCmd(), autoscaleCmd(), keyvaultCmd(), versionCmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "tandem:", err)
		os.Exit(1)
	}
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Run:   func(*cobra.Command, []string) { fmt.Println("tandem", version) },
	}
}
