package diagnostics

import (
	"fmt"
	"sort"
	"strings"

	"github.com/tandemdata/tandem/internal/audit/destination/eventhub"
	"github.com/tandemdata/tandem/internal/store"
)

// Kinds of documents this package owns in the metadata store.
const (
	kindSetting store.Kind = "audit.diagnosticsetting"
	// kindInit marks that the default setting was made, so deleting it
	// sticks.
	kindInit store.Kind = "audit.diagnostics"
)

// MaxSettings is how many diagnostic settings a workspace may have, as in
// Azure.
const MaxSettings = 5

// Categories are the audit categories a setting can select: the seed's
// list, less the services Tandem does not have (SQL warehouses, MLflow,
// Unity Catalog, Genie...), plus clusterPolicies.
var Categories = []string{
	"accounts", "clusterPolicies", "clusters", "dbfs", "globalInitScripts", "instancePools",
	"jobs", "notebook", "repos", "secrets", "sqlPermissions", "ssh", "workspace",
}

// Category groups, as Azure names them: both select every record,
// including categories outside the list above.
const (
	GroupAllLogs = "allLogs"
	GroupAudit   = "audit"
)

// Destination kinds, as they appear in the API and in metrics.
const (
	KindStorageAccount = "storage_account"
	KindEventHub       = "event_hub"
	KindLogAnalytics   = "log_analytics"
)

// Setting is a diagnostic setting: which categories go to which
// destinations (at most one of each kind).
type Setting struct {
	Name        string       `json:"name"`
	ID          string       `json:"id,omitempty"`
	CreatedTime int64        `json:"created_time,omitempty"`
	UpdatedTime int64        `json:"updated_time,omitempty"`
	Logs        []LogSetting `json:"logs"`

	StorageAccount *StorageAccount `json:"storage_account,omitempty"`
	EventHub       *EventHub       `json:"event_hub,omitempty"`
	LogAnalytics   *LogAnalytics   `json:"log_analytics,omitempty"`
}

// LogSetting enables a category or a category group.
type LogSetting struct {
	Category      string `json:"category,omitempty"`
	CategoryGroup string `json:"category_group,omitempty"`
	Enabled       bool   `json:"enabled"`
}

// StorageAccount is the region's storage account as a destination.
type StorageAccount struct{}

// EventHub is a Kafka-protocol destination.
type EventHub struct {
	// BootstrapServers is a comma-separated list of host:port.
	BootstrapServers string `json:"bootstrap_servers"`
	// Name is the event hub (topic); empty means insights-logs-<category>.
	Name string `json:"name,omitempty"`
	// ConnectionString authenticates to Event Hubs (SASL PLAIN). The API
	// never returns it; a PUT that sends back the redacted marker keeps
	// the stored one.
	ConnectionString string `json:"connection_string,omitempty"`
	// UseTLS defaults to true when a connection string is set.
	UseTLS *bool `json:"use_tls,omitempty"`
	// Sealed is the connection string encrypted by the region's keyring,
	// the only form stored.
	Sealed []byte `json:"sealed_connection_string,omitempty"`
}

// LogAnalytics is the region's query store as a destination.
type LogAnalytics struct{}

// Kinds lists the destination kinds s has.
func (s Setting) Kinds() []string {
	var k []string
	if s.StorageAccount != nil {
		k = append(k, KindStorageAccount)
	}
	if s.EventHub != nil {
		k = append(k, KindEventHub)
	}
	if s.LogAnalytics != nil {
		k = append(k, KindLogAnalytics)
	}
	return k
}

// Selection is what a setting's logs select.
type Selection struct {
	All        bool
	Categories map[string]bool
}

// Has reports whether records of category are selected.
func (sel Selection) Has(category string) bool { return sel.All || sel.Categories[category] }

// Overlap returns a category both selections select, if any.
func (sel Selection) Overlap(o Selection) (string, bool) {
	switch {
	case sel.All && o.All:
		return GroupAllLogs, true
	case sel.All:
		for c := range o.Categories {
			return c, true
		}
	case o.All:
		for c := range sel.Categories {
			return c, true
		}
	}
	var common []string
	for c := range sel.Categories {
		if o.Categories[c] {
			common = append(common, c)
		}
	}
	if len(common) == 0 {
		return "", false
	}
	sort.Strings(common)
	return common[0], true
}

func canonicalCategory(c string) (string, bool) {
	for _, k := range Categories {
		if strings.EqualFold(k, c) {
			return k, true
		}
	}
	return "", false
}

// Select resolves a setting's logs.
func Select(logs []LogSetting) Selection {
	sel := Selection{Categories: map[string]bool{}}
	for _, l := range logs {
		if !l.Enabled {
			continue
		}
		if l.CategoryGroup != "" {
			sel.All = true
			continue
		}
		if c, ok := canonicalCategory(l.Category); ok {
			sel.Categories[c] = true
		}
	}
	return sel
}

// Normalize puts a setting as the user sent it into its stored form:
// canonical category names, trimmed addresses.
func Normalize(s Setting) Setting {
	logs := make([]LogSetting, 0, len(s.Logs))
	for _, l := range s.Logs {
		if c, ok := canonicalCategory(l.Category); ok {
			l.Category = c
		}
		for _, g := range []string{GroupAllLogs, GroupAudit} {
			if strings.EqualFold(l.CategoryGroup, g) {
				l.CategoryGroup = g
			}
		}
		logs = append(logs, l)
	}
	s.Logs = logs
	if s.EventHub != nil {
		eh := *s.EventHub
		var brokers []string
		for _, b := range strings.Split(eh.BootstrapServers, ",") {
			if b = strings.TrimSpace(b); b != "" {
				brokers = append(brokers, b)
			}
		}
		eh.BootstrapServers = strings.Join(brokers, ",")
		eh.Name = strings.TrimSpace(eh.Name)
		s.EventHub = &eh
	}
	return s
}

// eventHubConfig is the client configuration of a setting's event hub.
func (eh *EventHub) config(connectionString string) eventhub.Config {
	cfg := eventhub.Config{Topic: eh.Name, ConnectionString: connectionString}
	if eh.BootstrapServers != "" {
		cfg.Brokers = strings.Split(eh.BootstrapServers, ",")
	}
	cfg.TLS = connectionString != ""
	if eh.UseTLS != nil {
		cfg.TLS = *eh.UseTLS
	}
	return cfg
}

// sink names the place a destination writes to, for the rule that one
// place receives a category from one setting only.
func sink(s Setting, kind string) string {
	switch kind {
	case KindEventHub:
		return "event hub " + s.EventHub.BootstrapServers + "/" + s.EventHub.Name
	case KindStorageAccount:
		return "the region's storage account"
	default:
		return "the region's log analytics store"
	}
}

// validName: Azure setting names exclude URL-reserved characters; ours also
// become folder names in the storage account.
func validName(n string) bool {
	if n == "" || len(n) > 128 {
		return false
	}
	return strings.IndexFunc(n, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) < 0
}

// Validate checks a normalized setting against the others of the
// workspace (which do not include an older version of s). It returns a
// message for the caller, or "" if s is valid, and whether the problem is
// a limit rather than a bad value.
func Validate(s Setting, others []Setting) (problem string, limit bool) {
	if !validName(s.Name) {
		return fmt.Sprintf("Setting name %q must be 1 to 128 letters, digits, '-' or '_'.", s.Name), false
	}
	if len(s.Kinds()) == 0 {
		return "A diagnostic setting needs at least one destination: storage_account, event_hub or log_analytics.", false
	}
	enabled := 0
	for _, l := range s.Logs {
		switch {
		case l.Category != "" && l.CategoryGroup != "":
			return "A logs entry names either a category or a category_group, not both.", false
		case l.CategoryGroup != "":
			if l.CategoryGroup != GroupAllLogs && l.CategoryGroup != GroupAudit {
				return fmt.Sprintf("Unknown category_group %q: use %q or %q.", l.CategoryGroup, GroupAllLogs, GroupAudit), false
			}
		case l.Category != "":
			if _, ok := canonicalCategory(l.Category); !ok {
				return fmt.Sprintf("Unknown category %q. Categories are: %s.", l.Category, strings.Join(Categories, ", ")), false
			}
		default:
			return "A logs entry needs a category or a category_group.", false
		}
		if l.Enabled {
			enabled++
		}
	}
	if enabled == 0 {
		return "A diagnostic setting needs at least one enabled category in logs.", false
	}
	if eh := s.EventHub; eh != nil {
		if err := eh.config("").Validate(); err != nil {
			return "event_hub: " + strings.TrimPrefix(err.Error(), eventhub.ErrBadConfig.Error()+": ") + ".", false
		}
	}
	if len(others) >= MaxSettings {
		return fmt.Sprintf("A workspace has at most %d diagnostic settings.", MaxSettings), true
	}
	sel := Select(s.Logs)
	for _, o := range others {
		osel := Select(o.Logs)
		for _, kind := range s.Kinds() {
			if !contains(o.Kinds(), kind) || sink(s, kind) != sink(o, kind) {
				continue
			}
			if c, ok := sel.Overlap(osel); ok {
				return fmt.Sprintf("Destination %s already receives category %s from diagnostic setting %q; a destination receives a category from one setting only.",
					sink(s, kind), c, o.Name), false
			}
		}
	}
	return "", false
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
