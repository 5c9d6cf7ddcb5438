package workspace

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tandemdata/tandem/internal/api"
)

// MaxPathLen bounds a workspace path, in bytes.
const MaxPathLen = 4096

// NormalizePath checks a workspace path and returns its canonical form:
// absolute, without repeated or trailing slashes. It refuses relative paths,
// "." and ".." segments, control characters (NUL among them), invalid UTF-8
// and over-long paths, naming the problem.
func NormalizePath(p string) (string, error) {
	if p == "" {
		return "", api.MissingField("path")
	}
	if !utf8.ValidString(p) {
		return "", api.InvalidParam("Path %q is not valid UTF-8.", p)
	}
	if len(p) > MaxPathLen {
		return "", api.InvalidParam("Path is longer than %d bytes.", MaxPathLen)
	}
	if strings.IndexFunc(p, unicode.IsControl) >= 0 {
		return "", api.InvalidParam("Path %q contains a control character.", p)
	}
	if !strings.HasPrefix(p, "/") {
		return "", api.InvalidParam("Path (%s) must be absolute: it must start with /.", p)
	}
	var segs []string
	for _, s := range strings.Split(p, "/") {
		switch s {
		case "":
			continue
		case ".", "..":
			return "", api.InvalidParam("Path (%s) must not contain '.' or '..' segments.", p)
		}
		if strings.TrimSpace(s) == "" {
			return "", api.InvalidParam("Path (%s) has a name made only of spaces.", p)
		}
		segs = append(segs, s)
	}
	return "/" + strings.Join(segs, "/"), nil
}

// split returns a normalized path's parent and base name; the root's parent
// is "".
func split(p string) (dir, name string) {
	if p == "/" {
		return "", ""
	}
	i := strings.LastIndex(p, "/")
	if i == 0 {
		return "/", p[1:]
	}
	return p[:i], p[i+1:]
}

// ancestors returns the folders above a path, nearest first, ending at "/".
func ancestors(p string) []string {
	var out []string
	for d, _ := split(p); d != ""; d, _ = split(d) {
		out = append(out, d)
	}
	return out
}
