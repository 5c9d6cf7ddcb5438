// Package secrets is the Secrets API of a workspace: Databricks-backed
// secret scopes, the secrets in them and the READ, WRITE and MANAGE access
// control lists on each scope.
//
// Values are encrypted at rest with envelope encryption: each scope has its
// own data key, stored only wrapped by the region's "secrets" platform key,
// and each value is sealed with it and bound to its scope and key name. The
// metadata store never holds a value in clear, and a disabled platform key
// fails closed. A value leaves the package only through the API's get and
// through GetValue (the cluster runtime's dbutils.secrets); never through a
// list, a log line, an audit record or an error message.
//
// Azure Key Vault-backed scopes are not implemented: creating one is refused
// with an error that says so.
package secrets
