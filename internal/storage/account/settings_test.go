package account

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseRedundancy(t *testing.T) {
	for in, want := range map[string]Redundancy{
		"LRS": LRS, "zrs": ZRS, "Standard_GRS": GRS, "Standard_RAGZRS": RAGZRS, "RA-GRS": RAGRS, "ra_grs": RAGRS, "GZRS": GZRS,
	} {
		if got, err := ParseRedundancy(in); err != nil || got != want {
			t.Errorf("ParseRedundancy(%q) = %q %v, want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "XRS", "RA-LRS"} {
		if _, err := ParseRedundancy(bad); err == nil {
			t.Errorf("ParseRedundancy(%q) accepted", bad)
		}
	}
}

func TestPlanChange(t *testing.T) {
	plat := Encryption{KeySource: KeySourcePlatform}
	kv := Encryption{KeySource: KeySourceKeyVault, KeyVault: &VaultKey{URL: "https://127.0.0.1:1", KeyName: "cmk"}}
	kv2 := Encryption{KeySource: KeySourceKeyVault, KeyVault: &VaultKey{URL: "https://127.0.0.1:1", KeyName: "cmk", KeyVersion: "v2"}}
	s := func(r Redundancy, e Encryption, site string) Settings {
		return Settings{Redundancy: r, Encryption: e, Site: site}
	}
	infra := plat
	infra.InfrastructureEncryption = true
	cases := []struct {
		name      string
		cur, next Settings
		empty     bool
		want      Change
		wantErr   bool
	}{
		{"nothing changes", s(LRS, plat, primary), s(LRS, plat, primary), false, Change{}, false},
		{"LRS to ZRS converts", s(LRS, plat, primary), s(ZRS, plat, primary), false, Change{Convert: true}, false},
		{"LRS to GRS turns geo on", s(LRS, plat, primary), s(GRS, plat, primary), false, Change{GeoOn: true}, false},
		{"LRS to RA-GZRS converts and turns geo on", s(LRS, plat, primary), s(RAGZRS, plat, primary), false, Change{Convert: true, GeoOn: true}, false},
		{"GRS to RA-GRS changes nothing stored", s(GRS, plat, primary), s(RAGRS, plat, primary), false, Change{}, false},
		{"GZRS to LRS converts and turns geo off", s(GZRS, plat, primary), s(LRS, plat, primary), false, Change{Convert: true, GeoOff: true}, false},
		{"platform to key vault rewraps", s(LRS, plat, primary), s(LRS, kv, primary), false, Change{Rewrap: true}, false},
		{"pinning a key version rewraps", s(LRS, kv, primary), s(LRS, kv2, primary), false, Change{Rewrap: true}, false},
		{"key vault without a key name", s(LRS, plat, primary), s(LRS, Encryption{KeySource: KeySourceKeyVault, KeyVault: &VaultKey{URL: "https://x"}}, primary), false, Change{}, true},
		{"unknown key source", s(LRS, plat, primary), s(LRS, Encryption{KeySource: "AWS"}, primary), false, Change{}, true},
		{"infrastructure encryption on an empty account", s(LRS, plat, primary), s(LRS, infra, primary), true, Change{Infra: true}, false},
		{"infrastructure encryption on an account with data converts", s(LRS, plat, primary), s(LRS, infra, primary), false, Change{InfraConvert: true}, false},
		{"infrastructure encryption off again converts", s(LRS, infra, primary), s(LRS, plat, primary), false, Change{InfraConvert: true}, false},
		{"no second change during a conversion", converting(s(LRS, infra, primary)), s(LRS, plat, primary), false, Change{}, true},
		{"other changes during a conversion", converting(s(LRS, infra, primary)), s(GRS, infra, primary), false, Change{GeoOn: true}, false},
		{"zones in the secondary after failover", s(LRS, plat, second), s(GZRS, plat, second), false, Change{}, true},
		{"geo back on after failover", s(LRS, plat, second), s(GRS, plat, second), false, Change{GeoOn: true}, false},
	}
	for _, c := range cases {
		got, err := PlanChange(c.cur, c.next, c.empty)
		if (err != nil) != c.wantErr || !cmp.Equal(got, c.want) {
			t.Errorf("%s: %+v %v, want %+v (error %v)", c.name, got, err, c.want, c.wantErr)
		}
	}
}

func converting(s Settings) Settings {
	s.InfrastructureConversion = Enabling
	return s
}

func TestPlanFailover(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	lst := now.Add(-2 * time.Second)
	cases := []struct {
		name        string
		cur         Settings
		initialSync bool
		wantR       Redundancy
		wantSite    string
		wantErr     bool
	}{
		{"GRS fails over to the secondary, locally redundant", Settings{Redundancy: GRS, Site: primary}, false, LRS, second, false},
		{"RA-GZRS fails over", Settings{Redundancy: RAGZRS, Site: primary}, false, LRS, second, false},
		{"failing back after geo is turned on again", Settings{Redundancy: GRS, Site: second}, false, LRS, primary, false},
		{"LRS cannot fail over", Settings{Redundancy: LRS, Site: primary}, false, LRS, primary, true},
		{"ZRS cannot fail over", Settings{Redundancy: ZRS, Site: primary}, false, ZRS, primary, true},
		{"not during the initial sync", Settings{Redundancy: GRS, Site: primary}, true, GRS, primary, true},
	}
	for _, c := range cases {
		got, err := PlanFailover(c.cur, c.initialSync, lst, now)
		if (err != nil) != c.wantErr || got.Redundancy != c.wantR || got.Site != c.wantSite {
			t.Errorf("%s: %s/%s %v", c.name, got.Redundancy, got.Site, err)
			continue
		}
		if err == nil && (got.LastFailoverTime != now.UnixMilli() || got.FailoverLastSyncTime != lst.UnixMilli()) {
			t.Errorf("%s: failover times %+v", c.name, got)
		}
	}
}
