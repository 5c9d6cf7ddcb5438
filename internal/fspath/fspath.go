// Package fspath checks and normalises the slash-separated absolute paths of
// Tandem's file trees (the workspace and DBFS): one set of rules, so both
// APIs refuse the same bad input with the same message.
package fspath

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tandemdata/tandem/internal/api"
)

// MaxPathLen bounds a workspace path, in bytes.
const MaxPathLen = 4096

// Clean checks a workspace path and returns its canonical form:
// absolute, without repeated or trailing slashes. It refuses relative paths,
// "." and ".." segments, control characters (NUL among them), invalid UTF-8
// and over-long paths, naming the problem.
func Clean(p string) (string, error) {
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

// Split returns a clean path's parent and base name; the root's parent is "".
func Split(p string) (dir, name string) {
	if p == "/" {
		return "", ""
	}
	i := strings.LastIndex(p, "/")
	if i == 0 {
		return "/", p[1:]
	}
	return p[:i], p[i+1:]
}

// Ancestors returns the folders above a clean path, nearest first, ending at "/".
func Ancestors(p string) []string {
	var out []string
	for d, _ := Split(p); d != ""; d, _ = Split(d) {
		out = append(out, d)
	}
	return out
}
