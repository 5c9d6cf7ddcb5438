package testenv

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/tandemdata/tandem/internal/proc"
)

var (
	pgOnce sync.Once
	pgBase string // postgres://tandem@127.0.0.1:port/
	pgErr  error
	pgSeq  atomic.Int64
)

// Postgres returns the URL of a new, empty database on a PostgreSQL server
// from the machine's Debian packages, started on first use. Setting
// TANDEM_TEST_POSTGRES_URL (a server URL ending in "/") uses that server
// instead. A missing server fails the test: `make test` installs it.
func Postgres(t testing.TB) string {
	t.Helper()
	pgOnce.Do(func() {
		if u := os.Getenv("TANDEM_TEST_POSTGRES_URL"); u != "" {
			pgBase = u
			return
		}
		pgBase, pgErr = startPostgres()
	})
	if pgErr != nil {
		t.Fatalf("PostgreSQL for tests: %v", pgErr)
	}
	name := fmt.Sprintf("t%d_%d", os.Getpid(), pgSeq.Add(1))
	db, err := sql.Open("pgx", pgBase+"postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	return pgBase + name
}

func postgresBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("no PostgreSQL server found (Debian package postgresql); scripts/setup installs it")
}

func startPostgres() (string, error) {
	bin, err := postgresBin()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "tandem-pg-")
	if err != nil {
		return "", err
	}
	// PostgreSQL refuses to run as root: run it as the postgres user the
	// Debian package creates.
	runAs := ""
	if os.Geteuid() == 0 {
		runAs = "postgres"
		u, err := user.Lookup(runAs)
		if err != nil {
			return "", fmt.Errorf("running as root needs the postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return "", err
		}
	}
	data := filepath.Join(dir, "data")
	var out bytes.Buffer
	initdb := proc.Spec{Path: filepath.Join(bin, "initdb"), Args: []string{"-D", data, "-A", "trust", "-U", "tandem", "-E", "UTF8", "--no-sync"},
		Stdout: &out, Stderr: &out, User: runAs}
	if err := proc.Run(context.Background(), initdb); err != nil {
		return "", fmt.Errorf("initdb: %v: %s", err, out.String())
	}
	port := freePort()
	logf, err := os.Create(filepath.Join(os.TempDir(), fmt.Sprintf("tandem-pg-%d.log", port)))
	if err != nil {
		return "", err
	}
	p, err := proc.Start(proc.Spec{
		Path: filepath.Join(bin, "postgres"),
		Args: []string{"-D", data, "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-k", dir,
			"-c", "fsync=off", "-c", "max_connections=200", "-c", "shared_buffers=64MB"},
		Stdout: logf, Stderr: logf, User: runAs,
	})
	if err != nil {
		return "", err
	}
	atExit(func() {
		p.Stop(10 * time.Second)
		logf.Close()
		os.RemoveAll(dir)
	})
	base := fmt.Sprintf("postgres://tandem@127.0.0.1:%d/", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		db, _ := sql.Open("pgx", base+"postgres")
		err := db.Ping()
		db.Close()
		if err == nil {
			return base, nil
		}
		select {
		case <-p.Done():
			return "", fmt.Errorf("postgres exited: %v (log %s)", p.Err(), logf.Name())
		default:
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("postgres did not accept connections: %v (log %s)", err, logf.Name())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
