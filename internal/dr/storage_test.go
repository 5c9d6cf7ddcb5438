package dr_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/tandemdata/tandem/internal/dr"
	"github.com/tandemdata/tandem/internal/server/servertest"
	"github.com/tandemdata/tandem/internal/storage/account"
)

func putDBFS(t *testing.T, srv *servertest.Server, path string, data []byte) {
	t.Helper()
	must(t, srv.Do(srv.AdminToken, "POST", "/api/2.0/dbfs/put", map[string]any{"path": path, "overwrite": true,
		"contents": base64.StdEncoding.EncodeToString(data)}), "dbfs put "+path)
}

func readDBFS(t *testing.T, srv *servertest.Server, path string, n int) []byte {
	t.Helper()
	r := must(t, srv.Do(srv.AdminToken, "GET", fmt.Sprintf("/api/2.0/dbfs/read?path=%s&length=%d", url.QueryEscape(path), n), nil), "dbfs read "+path).JSON(t)
	b, _ := base64.StdEncoding.DecodeString(fmt.Sprint(r["data"]))
	return b
}

func exportNotebook(t *testing.T, srv *servertest.Server, path string) (string, any) {
	t.Helper()
	r := must(t, srv.Do(srv.AdminToken, "GET", "/api/2.0/workspace/export?format=SOURCE&path="+url.QueryEscape(path), nil), "export "+path).JSON(t)
	src, _ := base64.StdEncoding.DecodeString(fmt.Sprint(r["content"]))
	st := must(t, srv.Do(srv.AdminToken, "GET", "/api/2.0/workspace/get-status?path="+url.QueryEscape(path), nil), "get-status "+path).JSON(t)
	return string(src), st["object_id"]
}

// waitStorageShipped waits until the leader's storage account has shipped
// every change to its peer.
func waitStorageShipped(t *testing.T, srv *servertest.Server) {
	t.Helper()
	waitFor(t, "the storage account to ship its contents", 30*time.Second, func() bool {
		s := status(t, srv).Storage
		return s != nil && s.Geo && s.Backlog == 0 && !s.Held
	})
}

// TestStorageContentsFollowFailoverAndFailback writes a DBFS file and a
// notebook in the primary, fails over (planned) and reads both back in the
// secondary, same bytes and same ids; what the secondary writes while it
// leads reaches the former primary, and failback carries it back.
func TestStorageContentsFollowFailoverAndFailback(t *testing.T) {
	p := servertest.StartPair(t)
	data := make([]byte, 1<<20)
	rand.Read(data)
	putDBFS(t, p.Primary, "/data/input.bin", data)
	const src = "# Databricks notebook source\nprint('written in the primary')"
	must(t, importNotebook(t, p.Primary, "/Shared/etl", src), "import")
	wantSrc, wantID := exportNotebook(t, p.Primary, "/Shared/etl")
	waitCaughtUp(t, p)

	// The passive secondary ships nothing; it holds the primary's account key.
	if s := status(t, p.Secondary).Storage; s == nil || !s.Geo || !s.Held {
		t.Errorf("the passive secondary's storage: %+v", s)
	}
	if a, b := p.Primary.StorageAccount.KeyID(), p.Secondary.StorageAccount.KeyID(); a != b {
		t.Fatalf("the accounts hold different account keys: %s and %s", a, b)
	}

	o := orchestrator(t, pairRegions(p), nil)
	rep, err := o.Run(ctx, dr.Plan{Kind: dr.PlannedFailover, From: "primary", To: "secondary"})
	if err != nil || rep.Outcome != "succeeded" {
		t.Fatalf("planned failover: %v %+v", err, rep)
	}
	if got := readDBFS(t, p.Secondary, "/data/input.bin", len(data)); !bytes.Equal(got, data) {
		t.Errorf("the DBFS file in the secondary: %d bytes, want the primary's %d", len(got), len(data))
	}
	if gotSrc, gotID := exportNotebook(t, p.Secondary, "/Shared/etl"); gotSrc != wantSrc || gotID != wantID {
		t.Errorf("the notebook in the secondary: id %v %q, want id %v %q", gotID, gotSrc, wantID, wantSrc)
	}

	// Written while the secondary leads: it reaches the former primary.
	during := []byte("written during the outage")
	putDBFS(t, p.Secondary, "/data/during.txt", during)
	must(t, importNotebook(t, p.Secondary, "/Shared/during", "print('during')"), "import in the secondary")
	wantDuring, duringID := exportNotebook(t, p.Secondary, "/Shared/during")
	waitStorageShipped(t, p.Secondary)

	rep, err = o.Run(ctx, dr.Plan{Kind: dr.Failback, From: "secondary", To: "primary"})
	if err != nil || rep.Outcome != "succeeded" {
		t.Fatalf("failback: %v %+v", err, rep)
	}
	if got := readDBFS(t, p.Primary, "/data/during.txt", 1000); !bytes.Equal(got, during) {
		t.Errorf("the file written during the outage, after failback: %q", got)
	}
	if got := readDBFS(t, p.Primary, "/data/input.bin", len(data)); !bytes.Equal(got, data) {
		t.Errorf("the original file after failback: %d bytes", len(got))
	}
	if gotSrc, gotID := exportNotebook(t, p.Primary, "/Shared/during"); gotSrc != wantDuring || gotID != duringID {
		t.Errorf("the notebook written during the outage, after failback: id %v %q", gotID, gotSrc)
	}
	// Writes after failback ship again to the secondary.
	putDBFS(t, p.Primary, "/data/after.txt", []byte("after"))
	waitStorageShipped(t, p.Primary)
}

// TestPassiveAccountFollowsTheLeadersSettings: a settings change on the
// leader's account (read access to the secondary turned on) reaches the
// passive region's account, which reloads with it.
func TestPassiveAccountFollowsTheLeadersSettings(t *testing.T) {
	p := servertest.StartPair(t)
	set := p.Primary.StorageAccount.Settings()
	set.Redundancy = account.RAGRS
	if _, err := p.Primary.StorageAccount.Update(ctx, set, "admin"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the passive account to reload with RA-GRS", 20*time.Second, func() bool {
		return p.Secondary.StorageAccount.Settings().Redundancy == account.RAGRS
	})
	// Still paired, and shipping still held while passive.
	if a, b := p.Primary.StorageAccount.KeyID(), p.Secondary.StorageAccount.KeyID(); a != b {
		t.Errorf("account keys differ after the reload: %s and %s", a, b)
	}
	if s := status(t, p.Secondary).Storage; s == nil || !s.Held {
		t.Errorf("the passive secondary's storage after the reload: %+v", s)
	}
}

// TestFailbackAfterAnOutageCarriesStorageBack: the primary is lost, the
// secondary is promoted and takes DBFS files and a notebook while its peer is
// down; the primary returns, rejoins, and a failback brings the files back
// to it whole.
func TestFailbackAfterAnOutageCarriesStorageBack(t *testing.T) {
	p := servertest.StartPair(t)
	before := []byte("written before the outage")
	putDBFS(t, p.Primary, "/data/before.txt", before)
	waitCaughtUp(t, p)
	waitStorageShipped(t, p.Primary)
	p.Primary.Close()

	o := orchestrator(t, map[string]*servertest.Server{"primary": p.Primary, "secondary": p.Secondary}, nil)
	rep, err := o.Run(ctx, dr.Plan{Kind: dr.UnplannedFailover, From: "primary", To: "secondary", Force: true})
	if err != nil || rep.Outcome != "succeeded" {
		t.Fatalf("unplanned failover: %v %+v", err, rep)
	}
	if got := readDBFS(t, p.Secondary, "/data/before.txt", 100); !bytes.Equal(got, before) {
		t.Errorf("the file written before the outage, in the secondary: %q", got)
	}
	during := make([]byte, 1<<20)
	rand.Read(during)
	putDBFS(t, p.Secondary, "/data/during.bin", during)
	must(t, importNotebook(t, p.Secondary, "/Shared/during", "print('during')"), "import in the secondary")
	wantSrc, wantID := exportNotebook(t, p.Secondary, "/Shared/during")
	time.Sleep(time.Second) // shipments to the lost primary fail and back off

	prim := servertest.Start(t, p.PrimaryOpts...)
	waitFor(t, "the former primary to rejoin", 20*time.Second, func() bool {
		st := status(t, prim)
		return st.Role == dr.Passive && st.Rejoin == nil
	})
	start := time.Now()
	o = orchestrator(t, map[string]*servertest.Server{"primary": prim, "secondary": p.Secondary}, nil)
	rep, err = o.Run(ctx, dr.Plan{Kind: dr.Failback, From: "secondary", To: "primary"})
	if err != nil || rep.Outcome != "succeeded" {
		t.Fatalf("failback: %v %+v", err, rep)
	}
	t.Logf("failback after the outage took %s", time.Since(start).Round(time.Millisecond))
	if got := readDBFS(t, prim, "/data/during.bin", len(during)); !bytes.Equal(got, during) {
		t.Errorf("the file written during the outage, after failback: %d bytes", len(got))
	}
	if gotSrc, gotID := exportNotebook(t, prim, "/Shared/during"); gotSrc != wantSrc || gotID != wantID {
		t.Errorf("the notebook written during the outage, after failback: id %v %q", gotID, gotSrc)
	}
	if got := readDBFS(t, prim, "/data/before.txt", 100); !bytes.Equal(got, before) {
		t.Errorf("the file written before the outage, after failback: %q", got)
	}
}
