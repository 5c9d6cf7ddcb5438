package dbfs

import (
	"testing"
)

func TestStateAtPicksTheContentsCurrentAtATime(t *testing.T) {
	a := Node{Path: "/f", ModTime: 10, Size: 1}
	b := Node{Path: "/f", ModTime: 20, Size: 2}
	c := Node{Path: "/f", ModTime: 30, Size: 3}
	history := []Version{{Node: a, Replaced: 20}, {Node: b, Replaced: 25, Deleted: true}}
	cases := []struct {
		name     string
		cur      *Node
		versions []Version
		t        int64
		want     int64 // size of the state, 0 for none
	}{
		{"before the file existed", &c, history, 5, 0},
		{"first contents", &c, history, 15, 1},
		{"at the overwrite", &c, history, 20, 2},
		{"while deleted", &c, history, 27, 0},
		{"current contents", &c, history, 30, 3},
		{"long after", &c, history, 999, 3},
		{"deleted file, before deletion", nil, history, 22, 2},
		{"deleted file, after deletion", nil, history, 26, 0},
		{"no history", nil, nil, 50, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := stateAt(tc.cur, tc.versions, tc.t)
			if (tc.want == 0) == ok || (ok && got.Size != tc.want) {
				t.Fatalf("stateAt(%d) = %+v, %v; want size %d", tc.t, got, ok, tc.want)
			}
		})
	}
}

func TestCleanPathAcceptsTheDBFSScheme(t *testing.T) {
	for in, want := range map[string]string{"dbfs:/tmp/x": "/tmp/x", "/tmp//x/": "/tmp/x", "dbfs:": "/", "dbfs:/": "/"} {
		if got, err := CleanPath(in); err != nil || got != want {
			t.Errorf("CleanPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"dbfs:tmp", "tmp/x", "/a/../b", "/a\x00", "s3://bucket/x"} {
		if _, err := CleanPath(bad); err == nil {
			t.Errorf("CleanPath(%q) accepted", bad)
		}
	}
}

func FuzzDBFSPath(f *testing.F) {
	for _, s := range []string{"dbfs:/a", "/a/b", "dbfs:", "//", "/a/../b", "dbfs:dbfs:/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := CleanPath(in)
		if err != nil {
			return
		}
		if again, err := CleanPath(out); err != nil || again != out {
			t.Fatalf("CleanPath(%q) = %q is not stable: %q %v", in, out, again, err)
		}
	})
}
