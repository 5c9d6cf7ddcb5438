// Command storage benchmarks the storage account's layers in one run, so
// their ratios compare on the same noisy machine: put and get throughput of
// 1 MiB and 64 MiB objects on the plain local backend, with server-side
// encryption, with double encryption, with LRS's three copies, through the
// whole default account, and on Azurite through the same azblob client; and
// the geo-replication lag (Last Sync Time behind now) while writing at a
// steady rate.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tandemdata/tandem/internal/keys"
	"github.com/tandemdata/tandem/internal/proc"
	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/storage/account"
	"github.com/tandemdata/tandem/internal/storage/azureblob"
	"github.com/tandemdata/tandem/internal/storage/local"
	"github.com/tandemdata/tandem/internal/storage/redundancy"
	"github.com/tandemdata/tandem/internal/storage/sse"
	"github.com/tandemdata/tandem/internal/store/sqlstore"
)

var ctx = context.Background()

type config struct {
	name string
	open func(dir string) (storage.Backend, func())
}

func main() {
	var (
		total    = flag.Int("mb", 192, "MiB written (and read) per configuration, size and round")
		rounds   = flag.Int("rounds", 3, "rounds; each configuration's median is reported")
		sizesArg = flag.String("sizes", "1,64", "object sizes in MiB")
		azurite  = flag.String("azurite", ".tools/node_modules/.bin/azurite-blob", "azurite-blob to start (empty: skip Azurite)")
		geoRate  = flag.Int("geo-rate", 20, "MB/s written during the geo-replication lag measurement (0: skip)")
		geoFor   = flag.Duration("geo-duration", 20*time.Second, "length of the geo-replication lag measurement")
		only     = flag.String("only", "", "run only configurations whose name matches this regular expression")
	)
	flag.Parse()
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	work, err := os.MkdirTemp("", "tandem-bench-storage-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(work)
	ring, err := keys.OpenKeyring(filepath.Join(work, "keys"))
	if err != nil {
		log.Fatal(err)
	}
	svcKEK, _ := ring.KEK("bench")
	infraKEK, _ := ring.KEK("bench-infrastructure")

	configs := []config{
		{"plain (local directory)", func(dir string) (storage.Backend, func()) { return must(local.New(dir)), func() {} }},
		{"SSE (AES-256-GCM)", func(dir string) (storage.Backend, func()) {
			return must(sse.Open(ctx, sse.Config{Inner: must(local.New(dir)), KEK: svcKEK, Record: "service"})), func() {}
		}},
		{"SSE + double encryption (XChaCha20-Poly1305)", func(dir string) (storage.Backend, func()) {
			infra := must(sse.Open(ctx, sse.Config{Inner: must(local.New(dir)), KEK: infraKEK, Record: "infrastructure", Algorithm: sse.XChaCha20Poly1305}))
			return must(sse.Open(ctx, sse.Config{Inner: infra, KEK: svcKEK, Record: "service"})), func() {}
		}},
		{"LRS (3 copies, checksums)", func(dir string) (storage.Backend, func()) {
			l := lrs(dir)
			return l, func() { l.Close() }
		}},
		{"account default (SSE + LRS)", func(dir string) (storage.Backend, func()) {
			a := openAccount(dir, ring, account.Settings{})
			return a, func() { a.Close() }
		}},
	}
	if *azurite != "" {
		url, stop := startAzurite(*azurite, filepath.Join(work, "azurite"))
		defer stop()
		n := 0
		configs = append(configs, config{"Azurite (azblob client)", func(dir string) (storage.Backend, func()) {
			n++
			return must(azureblob.New(ctx, azureblob.Config{ServiceURL: url, Account: "devstoreaccount1",
				Key:       "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
				Container: fmt.Sprintf("bench-%d", n)})), func() {}
		}})
	}
	var sizes []int
	for _, s := range strings.Split(*sizesArg, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			log.Fatalf("-sizes: %v", err)
		}
		sizes = append(sizes, n)
	}
	fmt.Printf("storage benchmark: %d MiB per configuration and size, %d rounds (median), GOMAXPROCS=%d\n\n", *total, *rounds, runtime.GOMAXPROCS(0))
	type key struct {
		cfg  int
		size int
	}
	puts, gets := map[key][]float64{}, map[key][]float64{}
	for r := 0; r < *rounds; r++ {
		for _, size := range sizes {
			data := make([]byte, size<<20)
			rand.Read(data)
			count := max(*total/size, 2)
			// Every configuration is open at once and the objects are
			// written and read in turn, one object per configuration: the
			// machine's noise (other work's fsyncs) falls on all alike.
			var open []int
			backends := map[int]storage.Backend{}
			closers := map[int]func(){}
			for i, c := range configs {
				if *only != "" && !regexp.MustCompile(*only).MatchString(c.name) {
					continue
				}
				dir := filepath.Join(work, fmt.Sprintf("r%d-s%d-c%d", r, size, i))
				backends[i], closers[i] = c.open(dir)
				open = append(open, i)
			}
			putT, getT := map[int]time.Duration{}, map[int]time.Duration{}
			for n := 0; n < count; n++ {
				for _, i := range open {
					putT[i] += timePut(backends[i], fmt.Sprintf("bench/%06d", n), data)
				}
			}
			for n := 0; n < count; n++ {
				for _, i := range open {
					getT[i] += timeGet(backends[i], fmt.Sprintf("bench/%06d", n), len(data))
				}
			}
			mb := float64(count*len(data)) / 1e6
			for _, i := range open {
				closers[i]()
				os.RemoveAll(filepath.Join(work, fmt.Sprintf("r%d-s%d-c%d", r, size, i)))
				puts[key{i, size}] = append(puts[key{i, size}], mb/putT[i].Seconds())
				gets[key{i, size}] = append(gets[key{i, size}], mb/getT[i].Seconds())
			}
		}
	}
	fmt.Println("| configuration | object | put MB/s | get MB/s | put vs plain | get vs plain |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, size := range sizes {
		plainPut, plainGet := median(puts[key{0, size}]), median(gets[key{0, size}])
		for i, c := range configs {
			if len(puts[key{i, size}]) == 0 {
				continue
			}
			p, g := median(puts[key{i, size}]), median(gets[key{i, size}])
			fmt.Printf("| %s | %d MiB | %.0f | %.0f | %.0f%% | %.0f%% |\n", c.name, size, p, g, 100*p/plainPut, 100*g/plainGet)
		}
	}
	if *geoRate > 0 {
		fmt.Println()
		geoLag(filepath.Join(work, "geo"), ring, *geoRate, *geoFor)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		log.Fatal(err)
	}
	return v
}

func lrs(dir string) *redundancy.Layer {
	var copies []redundancy.Copy
	for i := 1; i <= 3; i++ {
		copies = append(copies, redundancy.Copy{Name: fmt.Sprintf("copy-%d", i), Backend: must(local.New(filepath.Join(dir, fmt.Sprintf("copy-%d", i))))})
	}
	return must(redundancy.Open(ctx, redundancy.Config{Copies: copies, StateFile: filepath.Join(dir, "copies.json")}))
}

func openAccount(dir string, ring *keys.Keyring, set account.Settings) *account.Account {
	os.MkdirAll(dir, 0o700)
	st := must(sqlstore.Open(ctx, filepath.Join(dir, "meta.db")))
	return must(account.Open(ctx, account.Options{Name: "bench", Dir: filepath.Join(dir, "storage"), Store: st, Keys: ring, Defaults: set}))
}

func timePut(b storage.Backend, name string, data []byte) time.Duration {
	start := time.Now()
	if err := b.Put(ctx, name, bytes.NewReader(data)); err != nil {
		log.Fatalf("put: %v", err)
	}
	return time.Since(start)
}

func timeGet(b storage.Backend, name string, size int) time.Duration {
	start := time.Now()
	r, err := b.Get(ctx, name, 0, -1)
	if err != nil {
		log.Fatalf("get: %v", err)
	}
	n, err := io.Copy(io.Discard, r)
	r.Close()
	if err != nil || n != int64(size) {
		log.Fatalf("get: %d bytes, %v", n, err)
	}
	return time.Since(start)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// geoLag writes 1 MiB objects at rate MB/s through a GRS account for d and
// samples the Last Sync Time's lag behind now every 50 ms.
func geoLag(dir string, ring *keys.Keyring, rate int, d time.Duration) {
	a := openAccount(dir, ring, account.Settings{Redundancy: account.GRS})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); a.Run(runCtx) }()
	data := make([]byte, 1<<20)
	rand.Read(data)
	var lags []time.Duration
	stopSample := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopSample:
				return
			case <-t.C:
				if g := a.GeoStatus(); g != nil && g.HasLastSyncTime {
					lags = append(lags, max(time.Since(g.LastSyncTime), 0))
				}
			}
		}
	}()
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	written := 0
	for i := 0; time.Since(start) < d; i++ {
		next := start.Add(time.Duration(i) * interval)
		time.Sleep(time.Until(next))
		if err := a.Put(ctx, fmt.Sprintf("geo/%06d", i%200), bytes.NewReader(data)); err != nil {
			log.Fatalf("geo put: %v", err)
		}
		written++
	}
	elapsed := time.Since(start)
	close(stopSample)
	<-sampled
	cancel()
	<-done
	a.Close()
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	pct := func(p float64) time.Duration {
		if len(lags) == 0 {
			return 0
		}
		return lags[min(len(lags)-1, int(p*float64(len(lags))))]
	}
	fmt.Printf("geo-replication (GRS, SSE, LRS both sides): %.1f MB/s written for %s, %d samples: lag p50 %s, p99 %s, max %s\n",
		float64(written)*1.048576/elapsed.Seconds(), d, len(lags), pct(0.5).Round(time.Millisecond), pct(0.99).Round(time.Millisecond), pct(1).Round(time.Millisecond))
}

func startAzurite(bin, dir string) (string, func()) {
	os.MkdirAll(dir, 0o700)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	logf, _ := os.Create(filepath.Join(dir, "azurite.log"))
	p, err := proc.Start(proc.Spec{Path: "node", Args: []string{bin, "--blobHost", "127.0.0.1", "--blobPort", strconv.Itoa(port),
		"--location", dir, "--silent", "--skipApiVersionCheck", "--loose", "--disableTelemetry"}, Stdout: logf, Stderr: logf})
	if err != nil {
		log.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for i := 0; i < 300; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "http://" + addr + "/devstoreaccount1", func() { p.Stop(5 * time.Second); logf.Close() }
}
