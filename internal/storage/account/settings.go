package account

import (
	"fmt"
	"strings"
	"time"
)

// Redundancy is a storage account's replication setting, as Azure names it.
type Redundancy string

// Redundancy settings.
const (
	LRS     Redundancy = "LRS"
	ZRS     Redundancy = "ZRS"
	GRS     Redundancy = "GRS"
	GZRS    Redundancy = "GZRS"
	RAGRS   Redundancy = "RA-GRS"
	RAGZRS  Redundancy = "RA-GZRS"
	primary            = "primary"
	second             = "secondary"
)

// ParseRedundancy accepts Azure's names (case-insensitive, with or without
// the Standard_ prefix and the dash of RA-).
func ParseRedundancy(s string) (Redundancy, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	u = strings.TrimPrefix(u, "STANDARD_")
	u = strings.ReplaceAll(u, "_", "-")
	switch u {
	case "LRS", "ZRS", "GRS", "GZRS":
		return Redundancy(u), nil
	case "RA-GRS", "RAGRS":
		return RAGRS, nil
	case "RA-GZRS", "RAGZRS":
		return RAGZRS, nil
	}
	return "", fmt.Errorf("redundancy %q is not one of LRS, ZRS, GRS, GZRS, RA-GRS, RA-GZRS", s)
}

// Zoned reports whether the primary copies are in zones.
func (r Redundancy) Zoned() bool { return r == ZRS || r == GZRS || r == RAGZRS }

// Geo reports whether the account is copied to the secondary.
func (r Redundancy) Geo() bool { return r == GRS || r == GZRS || r == RAGRS || r == RAGZRS }

// ReadAccess reports whether the secondary serves reads.
func (r Redundancy) ReadAccess() bool { return r == RAGRS || r == RAGZRS }

// Key sources, as Azure names them.
const (
	KeySourcePlatform = "Microsoft.Storage"
	KeySourceKeyVault = "Microsoft.Keyvault"
	KeySourceTransit  = "HashiCorp.Vault.Transit"
)

// Encryption is the account's encryption setting.
type Encryption struct {
	// KeySource is Microsoft.Storage (platform-managed keys, the default),
	// Microsoft.Keyvault (a customer-managed key in a key vault: Tandem's
	// built-in one or anything speaking its API) or HashiCorp.Vault.Transit.
	KeySource string `json:"key_source"`
	// KeyVault is the customer-managed key for Microsoft.Keyvault.
	KeyVault *VaultKey `json:"key_vault,omitempty"`
	// Transit is the customer-managed key for HashiCorp.Vault.Transit.
	Transit *VaultKey `json:"vault_transit,omitempty"`
	// InfrastructureEncryption adds the second layer (XChaCha20-Poly1305
	// under its own platform key).
	InfrastructureEncryption bool `json:"infrastructure_encryption"`
}

// VaultKey names a key in a key vault or a Transit engine. The token that
// authenticates to it is stored sealed and never returned.
type VaultKey struct {
	// URL is the vault's base URL (https://127.0.0.1:8200).
	URL string `json:"vault_url"`
	// Mount is the Transit engine's mount path (default "transit").
	Mount string `json:"mount,omitempty"`
	// KeyName and KeyVersion name the key; an empty version follows the
	// newest version (rotation in the vault then needs a rotate-key call).
	KeyName    string `json:"key_name"`
	KeyVersion string `json:"key_version,omitempty"`
	// CAPEM is the PEM certificate the vault's TLS certificate chains to
	// (empty: the system roots).
	CAPEM string `json:"ca_pem,omitempty"`
	// Token is accepted on update and never stored in clear or returned.
	Token string `json:"token,omitempty"`
	// SealedToken is the token sealed by the platform key
	// storage-credentials (stored only).
	SealedToken []byte `json:"sealed_token,omitempty"`
}

// Settings is the stored configuration of one account.
type Settings struct {
	Name       string     `json:"name"`
	Redundancy Redundancy `json:"redundancy"`
	Encryption Encryption `json:"encryption"`
	// Site is where the account lives now: "primary", or "secondary"
	// after an account failover.
	Site string `json:"site"`
	// LastFailoverTime and the Last Sync Time the failover happened at
	// (changes after it were lost with the old primary) are kept for the
	// status.
	// InfrastructureConversion is "ENABLING" or "DISABLING" while the
	// objects of an account with data are rewritten with or without the
	// infrastructure layer, empty otherwise.
	InfrastructureConversion string `json:"infrastructure_conversion,omitempty"`
	LastFailoverTime         int64  `json:"last_failover_time,omitempty"`
	FailoverLastSyncTime     int64  `json:"failover_last_sync_time,omitempty"`
	Updated                  int64  `json:"updated"`
	UpdatedBy                string `json:"updated_by,omitempty"`
}

// Change says what the account must do to go from one setting to another.
type Change struct {
	// Convert copies the stored objects to other copies (LRS <-> ZRS).
	Convert bool
	// GeoOn starts geo-replication with an initial sync; GeoOff stops it.
	GeoOn, GeoOff bool
	// Rewrap wraps the account key with another KEK.
	Rewrap bool
	// Infra turns infrastructure encryption on or off at once (an empty
	// account); InfraConvert starts rewriting the objects of an account
	// with data, in the background.
	Infra, InfraConvert bool
}

// Infrastructure conversion states.
const (
	Enabling  = "ENABLING"
	Disabling = "DISABLING"
)

func (e Encryption) keyID() string {
	switch e.KeySource {
	case KeySourceKeyVault:
		if e.KeyVault != nil {
			return e.KeySource + "|" + e.KeyVault.URL + "|" + e.KeyVault.KeyName + "|" + e.KeyVault.KeyVersion
		}
	case KeySourceTransit:
		if e.Transit != nil {
			return e.KeySource + "|" + e.Transit.URL + "|" + e.Transit.Mount + "|" + e.Transit.KeyName
		}
	}
	return KeySourcePlatform
}

// Validate checks a setting on its own.
func (s Settings) Validate() error {
	if _, err := ParseRedundancy(string(s.Redundancy)); err != nil {
		return err
	}
	switch s.Encryption.KeySource {
	case KeySourcePlatform:
	case KeySourceKeyVault:
		if err := s.Encryption.KeyVault.validate("key_vault"); err != nil {
			return err
		}
	case KeySourceTransit:
		if err := s.Encryption.Transit.validate("vault_transit"); err != nil {
			return err
		}
	default:
		return fmt.Errorf("encryption.key_source %q is not one of %s, %s, %s", s.Encryption.KeySource,
			KeySourcePlatform, KeySourceKeyVault, KeySourceTransit)
	}
	return nil
}

func (k *VaultKey) validate(field string) error {
	if k == nil {
		return fmt.Errorf("encryption.%s is required for this key source", field)
	}
	if !strings.HasPrefix(k.URL, "https://") && !strings.HasPrefix(k.URL, "http://") {
		return fmt.Errorf("encryption.%s.vault_url %q is not an http(s) URL", field, k.URL)
	}
	if k.KeyName == "" {
		return fmt.Errorf("encryption.%s.key_name is required", field)
	}
	return nil
}

// PlanChange decides what moving from cur to next takes, and refuses what
// the account cannot do. It is pure.
//
//   - Turning infrastructure encryption on or off changes an empty account
//     at once; an account with data converts its objects in the
//     background (Azure fixes it at creation; Tandem lets it change), and
//     refuses another change of it until that conversion is done.
//   - After a failover the account lives in the secondary, which has no
//     zones: ZRS and GZRS are refused there.
func PlanChange(cur, next Settings, empty bool) (Change, error) {
	var c Change
	if err := next.Validate(); err != nil {
		return c, err
	}
	if cur.Encryption.InfrastructureEncryption != next.Encryption.InfrastructureEncryption {
		if cur.InfrastructureConversion != "" {
			return c, fmt.Errorf("infrastructure encryption is being turned %s (objects are being converted): wait until it is done",
				map[string]string{Enabling: "on", Disabling: "off"}[cur.InfrastructureConversion])
		}
		c.Infra, c.InfraConvert = empty, !empty
	}
	if next.Site == second && next.Redundancy.Zoned() {
		return c, fmt.Errorf("after a failover the account lives in the secondary region, which has no zones: choose LRS, GRS or RA-GRS")
	}
	c.Convert = cur.Redundancy.Zoned() != next.Redundancy.Zoned()
	c.GeoOn = !cur.Redundancy.Geo() && next.Redundancy.Geo()
	c.GeoOff = cur.Redundancy.Geo() && !next.Redundancy.Geo()
	c.Rewrap = cur.Encryption.keyID() != next.Encryption.keyID()
	return c, nil
}

// FailoverKind is Azure's failover type.
type FailoverKind string

// Failover kinds: Unplanned promotes the secondary as it is (changes after
// the Last Sync Time are lost); Planned first ships every change.
const (
	Unplanned FailoverKind = "Unplanned"
	Planned   FailoverKind = "Planned"
)

// PlanFailover decides the settings after an account failover, or refuses
// it: only a geo-redundant account whose secondary holds a complete copy
// (the initial sync is done) fails over. Afterwards the account lives in
// the other site and is locally redundant until geo-redundancy is turned
// back on. It is pure.
func PlanFailover(cur Settings, initialSync bool, lastSync time.Time, now time.Time) (Settings, error) {
	if !cur.Redundancy.Geo() {
		return cur, fmt.Errorf("the account is %s: only a geo-redundant account (GRS, GZRS, RA-GRS, RA-GZRS) can fail over", cur.Redundancy)
	}
	if initialSync {
		return cur, fmt.Errorf("the secondary is not a complete copy yet (initial sync running): failover would lose data")
	}
	next := cur
	next.Redundancy = LRS
	if cur.Site == second {
		next.Site = primary
	} else {
		next.Site = second
	}
	next.LastFailoverTime = now.UnixMilli()
	next.FailoverLastSyncTime = lastSync.UnixMilli()
	return next, nil
}
