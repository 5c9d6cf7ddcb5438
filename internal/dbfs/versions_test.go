package dbfs

import (
	"testing"

	"github.com/tandemdata/tandem/internal/storage"
)

func TestStateAtPicksWhatThePathHeldAtATime(t *testing.T) {
	a := Node{Path: "/f", ModTime: 10, Since: 10, Size: 1}
	b := Node{Path: "/f", ModTime: 20, Since: 20, Size: 2}
	c := Node{Path: "/f", ModTime: 30, Since: 30, Size: 3}
	moved := Node{Path: "/f", ModTime: 5, Since: 40, Size: 4} // written at 5 elsewhere, moved here at 40
	legacy := Node{Path: "/f", ModTime: 30, Size: 3}          // stored before Since existed
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
		{"deleted file, at deletion", nil, history, 25, 0},
		{"deleted file, after deletion", nil, history, 26, 0},
		{"no history", nil, nil, 50, 0},
		{"moved in: not here before the move", &moved, nil, 35, 0},
		{"moved in: here after the move", &moved, nil, 40, 4},
		{"node without since", &legacy, history, 30, 3},
		{"a directory is no file state", &Node{Path: "/f", IsDir: true}, history, 999, 0},
		{"same-millisecond overwrite leaves no gap", &Node{Path: "/f", Since: 20, Size: 9}, []Version{{Node: a, Replaced: 20}}, 19, 1},
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

func TestRestoreStepDecidesWhatARestoreDoes(t *testing.T) {
	old := Node{Path: "/f", ModTime: 10, Since: 10, Size: 1}
	cur := Node{Path: "/f", ModTime: 20, Since: 20, Size: 2}
	dir := Node{Path: "/f", IsDir: true, ModTime: 30, Since: 30}
	overwritten := []Version{{Node: old, Replaced: 20}}
	withBlock := func(n Node, blob string) Node {
		n.Blocks = []storage.Blob{{Name: blob, Size: n.Size}}
		return n
	}
	// old's contents, put back by a restore at 40 after cur replaced them.
	restored := withBlock(Node{Path: "/f", ModTime: 40, Since: 40, Size: 1}, "b1")
	overwrittenByOther := []Version{{Node: withBlock(old, "b1"), Replaced: 20}, {Node: cur, Replaced: 40}}
	other := withBlock(Node{Path: "/f", ModTime: 40, Since: 40, Size: 1}, "b2")
	deleted := []Version{{Node: old, Replaced: 20, Deleted: true}}
	cases := []struct {
		name     string
		cur      *Node
		versions []Version
		t        int64
		want     restoreAction
		wantSize int64
	}{
		{"unchanged since t", &cur, overwritten, 25, keepPath, 0},
		{"overwritten since t", &cur, overwritten, 15, putVersion, 1},
		{"deleted since t", nil, deleted, 15, putVersion, 1},
		{"created since t", &cur, nil, 15, removeFile, 0},
		{"created and overwritten since t", &cur, overwritten, 5, removeFile, 0},
		{"absent then and now", nil, deleted, 25, keepPath, 0},
		{"a directory now stays", &dir, deleted, 15, keepPath, 0},
		{"already restored to the same contents", &restored, overwrittenByOther, 15, keepPath, 0},
		{"same size, other contents", &other, overwritten, 15, putVersion, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, n := restoreStep(tc.cur, tc.versions, tc.t)
			if got != tc.want || n.Size != tc.wantSize {
				t.Fatalf("restoreStep(t=%d) = %v with size %d; want %v with size %d", tc.t, got, n.Size, tc.want, tc.wantSize)
			}
		})
	}
}
