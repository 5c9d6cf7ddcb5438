package agent

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestExecutorCDS(t *testing.T) {
	dir := t.TempDir()
	present := filepath.Join(dir, "present.jsa")
	if err := os.WriteFile(present, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "executor-conf")
	cases := []struct {
		name string
		l    Launch
		env  []string
		ok   bool
	}{
		{"no archive: executors start as before", Launch{Dir: dir}, nil, false},
		{"an archive not recorded yet is not used", Launch{Dir: dir, ExecutorArchive: filepath.Join(dir, "missing.jsa")}, nil, false},
		{"a recorded archive is used", Launch{Dir: dir, ExecutorArchive: present},
			[]string{"SPARK_CONF_DIR=" + empty, "JAVA_TOOL_OPTIONS=-XX:SharedArchiveFile=" + present + " -Xshare:auto"}, true},
		{"the preload records it", Launch{Dir: dir, ExecutorArchive: filepath.Join(dir, "new.jsa"), DumpExecutorArchive: true},
			[]string{"SPARK_CONF_DIR=" + empty, "JAVA_TOOL_OPTIONS=-XX:ArchiveClassesAtExit=" + filepath.Join(dir, "new.jsa")}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env, ok, err := executorCDS(c.l, filepath.Join(dir, "conf"))
			if err != nil {
				t.Fatal(err)
			}
			if ok != c.ok || !reflect.DeepEqual(env, c.env) {
				t.Errorf("got %v %v, want %v %v", env, ok, c.env, c.ok)
			}
			if ok {
				// Class-data sharing accepts only empty directories on the
				// class path.
				if ents, err := os.ReadDir(empty); err != nil || len(ents) != 0 {
					t.Errorf("the executors' configuration directory: %v %v", ents, err)
				}
			}
		})
	}
}
