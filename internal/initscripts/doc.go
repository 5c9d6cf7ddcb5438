// Package initscripts is the Global init scripts API: workspace-wide shell
// scripts that every node of every cluster runs, in their order, before
// Spark starts. Only workspace admins see and manage them, as in Databricks:
// they run as root on every node. Compute reads the enabled ones, decoded
// and in run order, through Service.Enabled.
package initscripts
