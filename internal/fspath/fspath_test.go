package fspath

import (
	"strings"
	"testing"
)

func TestCleanRefusesBadPathsAndNormalizes(t *testing.T) {
	cases := []struct {
		in, want, err string
	}{
		{"/Users/a@b.c/nb", "/Users/a@b.c/nb", ""},
		{"//Users///x//", "/Users/x", ""},
		{"/", "/", ""},
		{"/Shared/naïve notebook", "/Shared/naïve notebook", ""},
		{"", "", "Missing required field: path"},
		{"Users/x", "", "must be absolute"},
		{"/a/../b", "", "'..'"},
		{"/a/./b", "", "'..'"},
		{"/a\x00b", "", "control character"},
		{"/a\nb", "", "control character"},
		{"/a/ /b", "", "only of spaces"},
		{"/" + strings.Repeat("x", MaxPathLen), "", "longer than"},
		{"/\xff", "", "UTF-8"},
	}
	for _, c := range cases {
		got, err := Clean(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("Clean(%q) = %q, %v; want an error with %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("Clean(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func FuzzClean(f *testing.F) {
	for _, s := range []string{"/a/b", "//x//", "/a/../b", "rel", "/\x00", "/a/ /b", "/é/ü"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := Clean(in)
		if err != nil {
			return
		}
		// A normalized path is stable, absolute, and has no empty, "." or ".." segment.
		again, err := Clean(out)
		if err != nil || again != out {
			t.Fatalf("Clean(%q) = %q, which normalizes to %q, %v", in, out, again, err)
		}
		if out != "/" {
			for _, seg := range strings.Split(out[1:], "/") {
				if seg == "" || seg == "." || seg == ".." {
					t.Fatalf("Clean(%q) = %q has segment %q", in, out, seg)
				}
			}
		}
		if strings.ContainsRune(out, 0) {
			t.Fatalf("NUL in %q", out)
		}
	})
}
