package workspace

import (
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/fspath"
	"github.com/tandemdata/tandem/internal/store"
)

// The workspace's path rule is fspath.Clean (shared with DBFS; its table
// test lives there). These tests hold it to what the workspace builds on it:
// store keys that fit and prefix scans that list exactly one folder.

func TestObjectKeysListExactlyOneFolder(t *testing.T) {
	cases := []struct {
		dir, path string
		child     bool
	}{
		{"/", "/Users", true},
		{"/", "/Users/a", false},
		{"/Users", "/Users/a", true},
		{"/Users", "/Users/a/b", false},
		{"/Users", "/Usersx/a", false},
		{"/a", "/ab", false},
		{"/a", "/a b/c", false},
		{"/a/b", "/a/b/c", true},
		{"/a/b", "/a/bc/d", false},
	}
	for _, c := range cases {
		if got := strings.HasPrefix(objectKey(c.path), childPrefix(c.dir)); got != c.child {
			t.Errorf("key of %s under the scan of %s: %v, want %v", c.path, c.dir, got, c.child)
		}
	}
	// The longest path accepted still makes a key the store takes.
	long := "/" + strings.Repeat("x", fspath.MaxPathLen-1)
	if p, err := fspath.Clean(long); err != nil || !store.ValidKey(objectKey(p)) {
		t.Errorf("a %d-byte root-level path: %v, key valid %v", len(long), err, store.ValidKey(objectKey(p)))
	}
}

func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{
		"/", "", "/a/b", "//x//", "/Users/a@b.c/nb.py", "/a/../b", "/a/./b", "rel", "Users/x", "/\x00", "/a\x1fb",
		"/a/ /b", "/é/ü", "/\xff", "/a\u2028b", "/" + strings.Repeat("x", fspath.MaxPathLen-1), "/" + strings.Repeat("x", fspath.MaxPathLen),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := fspath.Clean(in)
		if err != nil {
			var e *api.Error
			if !errors.As(err, &e) || e.Code != api.InvalidParameterValue || e.Message == "" {
				t.Fatalf("Clean(%q) refused with %v; want INVALID_PARAMETER_VALUE naming the problem", in, err)
			}
			return
		}
		again, err := fspath.Clean(out)
		if err != nil || again != out {
			t.Fatalf("Clean(%q) = %q, which normalizes to %q, %v", in, out, again, err)
		}
		if !strings.HasPrefix(out, "/") || strings.Contains(out, "//") || out != "/" && strings.HasSuffix(out, "/") {
			t.Fatalf("Clean(%q) = %q is not canonical", in, out)
		}
		if !utf8.ValidString(out) || strings.IndexFunc(out, unicode.IsControl) >= 0 || len(out) > fspath.MaxPathLen {
			t.Fatalf("Clean(%q) = %q: invalid UTF-8, a control character or too long", in, out)
		}
		// Only the slashes changed: the names are the input's, in order.
		var names []string
		for _, s := range strings.Split(in, "/") {
			if s != "" {
				names = append(names, s)
			}
		}
		if want := "/" + strings.Join(names, "/"); out != want {
			t.Fatalf("Clean(%q) = %q, want %q", in, out, want)
		}
		for _, n := range names {
			if n == "." || n == ".." {
				t.Fatalf("Clean(%q) kept segment %q", in, n)
			}
		}
		if out == "/" {
			return
		}
		// The object's key fits the store, lies in its folder's scan and in
		// no other folder's.
		key := objectKey(out)
		if !store.ValidKey(key) || len(key) != len(out) {
			t.Fatalf("key %q of %q: valid %v, %d bytes", key, out, store.ValidKey(key), len(key))
		}
		dir, name := fspath.Split(out)
		if key != childPrefix(dir)+name {
			t.Fatalf("key %q of %q is not under its folder %q", key, out, dir)
		}
		for _, a := range fspath.Ancestors(dir) {
			if strings.HasPrefix(key, childPrefix(a)) {
				t.Fatalf("key %q of %q is in the scan of %q too", key, out, a)
			}
		}
	})
}
