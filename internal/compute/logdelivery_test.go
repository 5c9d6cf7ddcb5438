package compute

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/store"
	"github.com/tandemdata/tandem/internal/store/sqlstore"
)

func TestLogDestination(t *testing.T) {
	cases := []struct {
		conf, want, code string
	}{
		{``, "", ""},
		{`{"dbfs":{"destination":"dbfs:/cluster-logs"}}`, "/cluster-logs", ""},
		{`{"dbfs":{"destination":"dbfs:/cluster-logs/"}}`, "/cluster-logs", ""},
		{`{"dbfs":{"destination":"/logs/a"}}`, "/logs/a", ""},
		{`{"dbfs":{"destination":"dbfs:/"}}`, "", api.InvalidParameterValue},
		{`{"dbfs":{"destination":"logs"}}`, "", api.InvalidParameterValue},
		{`{"dbfs":{"destination":"dbfs:/a/../b"}}`, "", api.InvalidParameterValue},
		{`{"dbfs":{}}`, "", api.InvalidParameterValue},
		{`{"s3":{"destination":"s3://bucket/logs","region":"us-west-2"}}`, "", api.InvalidParameterValue},
		{`{"volumes":{"destination":"/Volumes/c/s/v/logs"}}`, "", api.InvalidParameterValue},
		{`{"dbfs":{"destination":"dbfs:/a"},"s3":{"destination":"s3://b"}}`, "", api.InvalidParameterValue},
		{`{"nothing":1}`, "", api.InvalidParameterValue},
		{`[1]`, "", api.InvalidParameterValue},
	}
	for _, c := range cases {
		got, err := logDestination(json.RawMessage(c.conf))
		code := ""
		var ae *api.Error
		if errors.As(err, &ae) {
			code = ae.Code
		} else if err != nil {
			code = err.Error()
		}
		if got != c.want || code != c.code {
			t.Errorf("%s: got %q, %q (%v); want %q, %q", c.conf, got, code, err, c.want, c.code)
		}
	}
	_, err := logDestination(json.RawMessage(`{"s3":{"destination":"s3://b"}}`))
	if err == nil || !strings.Contains(err.Error(), "s3 destinations are not supported") {
		t.Errorf("s3 message: %v", err)
	}
}

func TestDeliveredPathLayout(t *testing.T) {
	cases := []struct {
		stream, rel string
		rotates, ok bool
	}{
		{"driver/stdout", "driver/stdout", false, true},
		{"driver/stderr", "driver/stderr", false, true},
		{"driver/log4j-active.log", "driver/log4j-active.log", true, true},
		{"executor/app-20261206093000-0000/0/stdout", "executor/app-20261206093000-0000/0/stdout", false, true},
		{"executor/app-20261206093000-0000/12/stderr", "executor/app-20261206093000-0000/12/stderr", false, true},
		{"executor/app-1/0/other", "", false, false},
		{"eventlog/1206-093000-abc_127.0.0.1/app-1/eventlog", "eventlog/1206-093000-abc_127.0.0.1/app-1/eventlog", false, true},
		{"init_scripts/c_127.0.0.1/20261206_093000_00_setup.sh.stdout.log", "init_scripts/c_127.0.0.1/20261206_093000_00_setup.sh.stdout.log", false, true},
		{"init_scripts/c_127.0.0.1/20261206_093000_00_setup.sh.stderr.log", "init_scripts/c_127.0.0.1/20261206_093000_00_setup.sh.stderr.log", false, true},
		{"tasks/t1/stdout", "", false, false},
		{"worker/stdout", "", false, false},
	}
	for _, c := range cases {
		rel, rot, ok := deliveredPath(c.stream)
		if rel != c.rel || rot != c.rotates || ok != c.ok {
			t.Errorf("%s: got %q %v %v; want %q %v %v", c.stream, rel, rot, ok, c.rel, c.rotates, c.ok)
		}
	}
}

func TestRotationNames(t *testing.T) {
	cases := []struct {
		at   time.Time
		rel  string
		want string
	}{
		{time.Date(2020, 3, 17, 1, 59, 59, 0, time.UTC), "driver/log4j-active.log", "driver/log4j-2020-03-17-01.log.gz"},
		{time.Date(2026, 12, 31, 23, 0, 0, 0, time.UTC), "driver/log4j-active.log", "driver/log4j-2026-12-31-23.log.gz"},
		// Hours are UTC whatever the clock's zone.
		{time.Date(2026, 1, 1, 1, 30, 0, 0, time.FixedZone("CET", 3600)), "driver/log4j-active.log", "driver/log4j-2026-01-01-00.log.gz"},
	}
	for _, c := range cases {
		if got := rotatedPath(c.rel, logHour(c.at)); got != c.want {
			t.Errorf("%s at %s: got %s, want %s", c.rel, c.at, got, c.want)
		}
	}
}

func TestAddSourcesKeepsOrderAndAddsNewOnesByAge(t *testing.T) {
	f := &deliveredFile{Sources: []sourceCursor{{Instance: "i-b", Offset: 10}}}
	got := f.addSources([]source{{Instance: "i-c", Size: 5, ModTime: 3}, {Instance: "i-b", Size: 20, ModTime: 9}, {Instance: "i-a", Size: 7, ModTime: 2}})
	want := []source{{Instance: "i-b", Size: 20}, {Instance: "i-a", Size: 7}, {Instance: "i-c", Size: 5}}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatal(d)
	}
}

// memSink is DBFS in memory, with AppendAt's contract; failAfter makes
// the n-th write fail after it took effect (a crash between the write and
// the cursor's record).
type memSink struct {
	mu        sync.Mutex
	files     map[string][]byte
	writes    int
	failAfter int
}

var errCrash = errors.New("crashed after the write")

func (m *memSink) tick() error {
	m.writes++
	if m.failAfter > 0 && m.writes == m.failAfter {
		return errCrash
	}
	return nil
}

func (m *memSink) AppendAt(_ context.Context, p string, at int64, data []byte) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if at == 0 {
		m.files[p] = append([]byte(nil), data...)
		return int64(len(data)), m.tick()
	}
	cur, ok := m.files[p]
	if !ok || int64(len(cur)) < at || int64(len(cur)) > at+int64(len(data)) {
		return 0, fmt.Errorf("conflict at %d on %s (%d)", at, p, len(cur))
	}
	m.files[p] = append(cur, data[int64(len(cur))-at:]...)
	return int64(len(m.files[p])), m.tick()
}

func (m *memSink) WriteFile(_ context.Context, p string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.files[p] = append([]byte(nil), data...)
	return m.tick()
}

func (m *memSink) ReadFile(_ context.Context, p string, _ int64) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.files[p]
	if !ok {
		return nil, os.ErrNotExist
	}
	return append([]byte(nil), b...), nil
}

func gunzip(t *testing.T, b []byte) string {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestDeliveryLoopLayoutRotationAndCrashes drives the delivery rounds over
// kept streams that grow, with a driver that is replaced, an hour that
// passes, and a crash injected after every write in turn: the destination
// ends with every byte once.
func TestDeliveryLoopLayoutRotationAndCrashes(t *testing.T) {
	for crashAt := 0; crashAt <= 14; crashAt++ {
		t.Run(fmt.Sprintf("crash-after-write-%d", crashAt), func(t *testing.T) {
			deliveryScenario(t, crashAt)
		})
	}
}

func deliveryScenario(t *testing.T, crashAt int) {
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 12, 6, 9, 58, 0, 0, time.UTC)
	sink := &memSink{files: map[string][]byte{}, failAfter: crashAt}
	s := &Service{Store: st, LogDir: t.TempDir(), LogSink: sink, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: func() time.Time { return now }}
	c := Cluster{ID: "1206-0958-c1", State: Running, Spec: ClusterSpec{ClusterLogConf: json.RawMessage(`{"dbfs":{"destination":"dbfs:/logs"}}`)}}
	if _, err := st.Update(ctx, func(tx store.Tx) error { return store.Put(tx, kindCluster, c.ID, c) }); err != nil {
		t.Fatal(err)
	}
	keep := func(inst, stream, data string) {
		t.Helper()
		size := int64(0)
		if p, err := s.logPath(c.ID, inst, stream); err == nil {
			if fi, err := os.Stat(p); err == nil {
				size = fi.Size()
			}
		}
		if _, err := s.writeLog(c.ID, inst, stream, size, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	round := func() {
		t.Helper()
		// A crashed round is followed by a fresh process's round.
		if err := s.deliverLogs(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.deliverLogs(ctx); err != nil {
			t.Fatal(err)
		}
	}
	keep("i-d1", "driver/stdout", "hello from d1\n")
	keep("i-d1", "driver/log4j-active.log", "09:58 INFO a\n")
	keep("i-d1", "tasks/t1/stdout", "not delivered\n")
	keep("i-w1", "executor/app-1/0/stdout", "exec out\n")
	keep("i-d1", "eventlog/c1_h/app-1/eventlog", `{"Event":"SparkListenerApplicationStart"}`+"\n")
	keep("i-d1", "init_scripts/c1_h/x_00_a.sh.stdout.log", "init\n")
	round()
	keep("i-d1", "driver/stdout", "more d1\n")
	keep("i-d1", "driver/log4j-active.log", "09:59 INFO b\n")
	round()
	now = now.Add(3 * time.Minute) // 10:01
	round()
	keep("i-d1", "driver/log4j-active.log", "10:01 INFO c\n")
	// A new driver (restart): its stream follows the first one's.
	keep("i-d2", "driver/stdout", "hello from d2\n")
	keep("i-w1", "executor/app-1/0/stdout", "exec more\n")
	round()
	now = now.Add(time.Hour) // 11:01, nothing new: the hour still rolls over
	round()
	round()

	got := map[string]string{}
	for p, b := range sink.files {
		got[p] = string(b)
	}
	dir := "/logs/" + c.ID + "/"
	want := map[string]string{
		dir + "driver/stdout":                          "hello from d1\nmore d1\nhello from d2\n",
		dir + "driver/log4j-active.log":                "",
		dir + "executor/app-1/0/stdout":                "exec out\nexec more\n",
		dir + "eventlog/c1_h/app-1/eventlog":           `{"Event":"SparkListenerApplicationStart"}` + "\n",
		dir + "init_scripts/c1_h/x_00_a.sh.stdout.log": "init\n",
	}
	for p, b := range got {
		if strings.HasSuffix(p, ".gz") {
			delete(got, p)
			got[p+" (gunzipped)"] = gunzip(t, []byte(b))
		}
	}
	want[dir+"driver/log4j-2026-12-06-09.log.gz (gunzipped)"] = "09:58 INFO a\n09:59 INFO b\n"
	want[dir+"driver/log4j-2026-12-06-10.log.gz (gunzipped)"] = "10:01 INFO c\n"
	if d := cmp.Diff(want, got); d != "" {
		keys := make([]string, 0, len(got))
		for k := range got {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		t.Fatalf("destination differs (-want +got):\n%s", d)
	}
	var status *LogSyncStatus
	st.View(ctx, func(tx store.Tx) error {
		status, err = logStatus(tx, c.ID)
		return err
	})
	if status == nil || status.LastAttempted != now.UnixMilli() || status.LastException != "" {
		t.Fatalf("status %+v, want last_attempted %d and no exception", status, now.UnixMilli())
	}
}
