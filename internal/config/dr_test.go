package config

import (
	"strings"
	"testing"
	"time"
)

func TestDRSettings(t *testing.T) {
	cases := []struct {
		name    string
		dr      DR
		wantErr string
	}{
		{"no peer", DR{}, ""},
		{"secondary", DR{Primary: "https://10.0.0.1:8443", PeerCAFile: "/ca.pem", RPO: "30s"}, ""},
		{"primary", DR{Peer: "https://10.0.1.1:8443", PeerCAFile: "/ca.pem"}, ""},
		{"both, same region", DR{Primary: "https://a:1", Peer: "https://a:1", PeerCAFile: "/ca.pem"}, ""},
		{"two different peers", DR{Primary: "https://a:1", Peer: "https://b:1", PeerCAFile: "/ca.pem"}, "a region has one peer"},
		{"peer without its CA", DR{Primary: "https://a:1"}, "peer_ca_file"},
		{"plain http peer", DR{Peer: "http://a:1", PeerCAFile: "/ca.pem"}, "https://"},
		{"router without its CA", DR{Router: "https://r:443"}, "router_ca_file"},
		{"bad RPO", DR{RPO: "soon"}, "dr.rpo"},
		{"negative RPO", DR{RPO: "-1s"}, "dr.rpo"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := Default()
			cfg.DataDir = t.TempDir()
			cfg.DR = c.dr
			err := cfg.Validate()
			if c.wantErr == "" && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Fatalf("Validate = %v, want an error about %q", err, c.wantErr)
			}
		})
	}
	if got := (DR{Primary: "https://a:1"}).PeerURL(); got != "https://a:1" {
		t.Errorf("PeerURL = %q", got)
	}
	if got := (DR{}).RPODuration(); got != time.Minute {
		t.Errorf("default RPO = %s", got)
	}
}
