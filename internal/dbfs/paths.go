package dbfs

import (
	"strings"

	"github.com/tandemdata/tandem/internal/fspath"
)

// CleanPath accepts a DBFS path as clients send it, "dbfs:/x" or "/x", and
// returns its canonical absolute form ("/x"). It refuses relative paths,
// "." and ".." segments, control characters (NUL among them), invalid UTF-8
// and over-long paths with an INVALID_PARAMETER_VALUE naming the problem.
// It is pure.
func CleanPath(p string) (string, error) {
	if rest, ok := strings.CutPrefix(p, "dbfs:"); ok {
		p = rest
		if p == "" {
			p = "/"
		}
	}
	return fspath.Clean(p)
}
