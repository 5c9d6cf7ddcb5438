package diagnostics

import (
	"strings"
	"testing"
)

func TestValidateSettings(t *testing.T) {
	la := &LogAnalytics{}
	all := []LogSetting{{CategoryGroup: GroupAllLogs, Enabled: true}}
	jobs := []LogSetting{{Category: "jobs", Enabled: true}}
	hub := func(servers, name string) *EventHub { return &EventHub{BootstrapServers: servers, Name: name} }
	def := Setting{Name: "default", Logs: all, LogAnalytics: la}
	cases := []struct {
		name   string
		s      Setting
		others []Setting
		want   string // substring of the problem; "" for valid
		limit  bool
	}{
		{"valid storage", Setting{Name: "s", Logs: jobs, StorageAccount: &StorageAccount{}}, []Setting{def}, "", false},
		{"category names ignore case", Normalize(Setting{Name: "s", Logs: []LogSetting{{Category: "DBFS", Enabled: true}}, StorageAccount: &StorageAccount{}}), nil, "", false},
		{"bad name", Setting{Name: "a/b", Logs: jobs, LogAnalytics: la}, nil, "letters, digits", false},
		{"no destination", Setting{Name: "s", Logs: jobs}, nil, "at least one destination", false},
		{"no enabled category", Setting{Name: "s", Logs: []LogSetting{{Category: "jobs"}}, LogAnalytics: la}, nil, "enabled category", false},
		{"unknown category", Setting{Name: "s", Logs: []LogSetting{{Category: "sqlanalytics", Enabled: true}}, LogAnalytics: la}, nil, "Unknown category", false},
		{"unknown group", Setting{Name: "s", Logs: []LogSetting{{CategoryGroup: "everything", Enabled: true}}, LogAnalytics: la}, nil, "Unknown category_group", false},
		{"both category and group", Setting{Name: "s", Logs: []LogSetting{{Category: "jobs", CategoryGroup: GroupAudit, Enabled: true}}, LogAnalytics: la}, nil, "not both", false},
		{"hub without servers", Setting{Name: "s", Logs: jobs, EventHub: hub("", "")}, nil, "bootstrap_servers is empty", false},
		{"hub address not host:port", Setting{Name: "s", Logs: jobs, EventHub: hub("kafka", "")}, nil, "not host:port", false},
		{"hub bad topic", Setting{Name: "s", Logs: jobs, EventHub: hub("k:9093", "a b")}, nil, "not a valid event hub name", false},
		{"query store already gets every category", Setting{Name: "s", Logs: jobs, LogAnalytics: la}, []Setting{def}, `category jobs from diagnostic setting "default"`, false},
		{"same hub same category", Setting{Name: "s", Logs: jobs, EventHub: hub("k:9093", "")},
			[]Setting{{Name: "o", Logs: jobs, EventHub: hub("k:9093", "")}}, "already receives category jobs", false},
		{"same hub other category", Setting{Name: "s", Logs: jobs, EventHub: hub("k:9093", "")},
			[]Setting{{Name: "o", Logs: []LogSetting{{Category: "clusters", Enabled: true}}, EventHub: hub("k:9093", "")}}, "", false},
		{"other hub same category", Setting{Name: "s", Logs: jobs, EventHub: hub("k:9093", "")},
			[]Setting{{Name: "o", Logs: jobs, EventHub: hub("other:9093", "")}}, "", false},
		{"sixth setting", Setting{Name: "s", Logs: jobs, StorageAccount: &StorageAccount{}},
			[]Setting{{Name: "1"}, {Name: "2"}, {Name: "3"}, {Name: "4"}, {Name: "5"}}, "at most 5", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, limit := Validate(c.s, c.others)
			if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) || limit != c.limit {
				t.Errorf("Validate = %q, %v; want %q, %v", got, limit, c.want, c.limit)
			}
		})
	}
}

func TestSelectionOfCategories(t *testing.T) {
	sel := Select([]LogSetting{{Category: "Jobs", Enabled: true}, {Category: "clusters", Enabled: false}})
	for cat, want := range map[string]bool{"jobs": true, "clusters": false, "accounts": false, "foo": false} {
		if sel.Has(cat) != want {
			t.Errorf("Has(%s) = %v", cat, !want)
		}
	}
	if all := Select([]LogSetting{{CategoryGroup: GroupAudit, Enabled: true}}); !all.Has("anything") {
		t.Error("the audit group does not select every category")
	}
}
