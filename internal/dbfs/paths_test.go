package dbfs

import (
	"strings"
	"testing"
	"unicode"

	"github.com/tandemdata/tandem/internal/api"
)

func TestCleanPathAcceptsBothFormsAndNamesWhatIsWrong(t *testing.T) {
	cases := []struct {
		in, want string
		err      string // part of the message; "" when the path is good
	}{
		{"dbfs:/tmp/x", "/tmp/x", ""},
		{"/tmp/x", "/tmp/x", ""},
		{"/tmp//x/", "/tmp/x", ""},
		{"dbfs://tmp/x", "/tmp/x", ""},
		{"dbfs:", "/", ""},
		{"dbfs:/", "/", ""},
		{"/", "/", ""},
		{"/FileStore/tables/données.csv", "/FileStore/tables/données.csv", ""},
		{"/a b/c", "/a b/c", ""},
		{"", "", "Missing required field: path"},
		{"tmp/x", "", "must be absolute"},
		{"dbfs:tmp", "", "must be absolute"},
		{"dbfs:dbfs:/x", "", "must be absolute"},
		{"s3://bucket/x", "", "must be absolute"},
		{"./big.bin", "", "must be absolute"},
		{"/a/../b", "", "'..'"},
		{"dbfs:/a/./b", "", "'..'"},
		{"/..", "", "'..'"},
		{"/a\x00b", "", "control character"},
		{"/a\tb", "", "control character"},
		{"/a\x1fb", "", "control character"},
		{"/a\u0085b", "", "control character"},
		{"/\xff", "", "UTF-8"},
		{"/a/   /b", "", "only of spaces"},
		{"/" + strings.Repeat("x", 5000), "", "longer than"},
	}
	for _, c := range cases {
		got, err := CleanPath(c.in)
		if c.err == "" {
			if err != nil || got != c.want {
				t.Errorf("CleanPath(%q) = %q, %v; want %q", c.in, got, err, c.want)
			}
			continue
		}
		if err == nil {
			t.Errorf("CleanPath(%q) = %q; want an error about %q", c.in, got, c.err)
			continue
		}
		if e := api.ErrorOf(err); e.Code != api.InvalidParameterValue || e.Status != 400 || !strings.Contains(e.Message, c.err) {
			t.Errorf("CleanPath(%q): %d %s %q; want 400 INVALID_PARAMETER_VALUE about %q", c.in, e.Status, e.Code, e.Message, c.err)
		}
	}
}

// FuzzDBFSPath checks what every accepted path guarantees: it is absolute
// and canonical, holds no empty, "." or ".." segment, no control character
// (so never the key separator) and normalises to itself.
func FuzzDBFSPath(f *testing.F) {
	for _, s := range []string{"dbfs:/a", "/a/b", "dbfs:", "//", "/a/../b", "dbfs:dbfs:/x", "dbfs://x//y/", "/a\x1fb", "/é/ü", "rel/x", "/a/ /b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := CleanPath(in)
		if err != nil {
			if e := api.ErrorOf(err); e.Code != api.InvalidParameterValue {
				t.Fatalf("CleanPath(%q): error code %s", in, e.Code)
			}
			return
		}
		if !strings.HasPrefix(out, "/") || (out != "/" && strings.HasSuffix(out, "/")) {
			t.Fatalf("CleanPath(%q) = %q is not a canonical absolute path", in, out)
		}
		if strings.IndexFunc(out, unicode.IsControl) >= 0 || strings.Contains(out, sep) {
			t.Fatalf("CleanPath(%q) = %q holds a control character", in, out)
		}
		if out != "/" {
			for _, seg := range strings.Split(out[1:], "/") {
				if seg == "" || seg == "." || seg == ".." {
					t.Fatalf("CleanPath(%q) = %q has segment %q", in, out, seg)
				}
			}
		}
		if again, err := CleanPath(out); err != nil || again != out {
			t.Fatalf("CleanPath(%q) = %q is not stable: %q %v", in, out, again, err)
		}
		if again, err := CleanPath("dbfs:" + out); err != nil || again != out {
			t.Fatalf("CleanPath(dbfs:%q) = %q, %v; want %q", out, again, err, out)
		}
	})
}
