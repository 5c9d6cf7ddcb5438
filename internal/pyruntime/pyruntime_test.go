package pyruntime

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestExtractNeverShowsAHalfWrittenFile: tasks starting together extract
// into the same directory while others read it.
func TestExtractNeverShowsAHalfWrittenFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := Extract(dir); err != nil {
		t.Fatal(err)
	}
	want, err := files.ReadFile("tandem_runtime/task.py")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "tandem_runtime", "task.py")
	// An older runtime is there: every Extract below rewrites it.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var bad int
	var mu sync.Mutex
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			b, err := os.ReadFile(path)
			if err == nil && len(b) != len(want) && len(b) != len("old") {
				mu.Lock()
				bad++
				mu.Unlock()
			}
		}
	}()
	for i := 0; i < 200; i++ {
		if err := os.WriteFile(path+".old", []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".old", path); err != nil {
			t.Fatal(err)
		}
		if _, err := Extract(dir); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if bad > 0 {
		t.Fatalf("a reader saw a half-written task.py %d times", bad)
	}
	if b, _ := os.ReadFile(path); string(b) != string(want) {
		t.Fatal("task.py is not the embedded one")
	}
}
