package compute

import (
	"encoding/json"
	"fmt"
	"path"
	"strings"

	"github.com/tandemdata/tandem/internal/api"
)

// libraryFile is a file a task needs on the driver: Remote (dbfs:/... or a
// workspace path) is fetched by the control plane with the rights of the
// task's principal and written as Local in the task's directory.
type libraryFile struct {
	Kind   string // "whl" or "jar"
	Remote string
	Local  string
}

// taskLibraries reads a task's `libraries`. Tandem installs wheels and
// jars given as files (DBFS or workspace); package repositories (pypi,
// maven, cran) and requirements files need a network the cluster may not
// have, so they are refused with a message that says what to do instead.
func taskLibraries(raws []json.RawMessage) ([]libraryFile, error) {
	var out []libraryFile
	for i, raw := range raws {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, api.InvalidParam("Library %d is not valid: %v", i, err)
		}
		for kind, v := range m {
			switch kind {
			case "whl", "jar":
				var p string
				if err := json.Unmarshal(v, &p); err != nil || p == "" {
					return nil, api.InvalidParam("Library %d: %s must be a path (dbfs:/... or a workspace file).", i, kind)
				}
				out = append(out, libraryFile{Kind: kind, Remote: p, Local: fmt.Sprintf("libs/%d/%s", i, safeBase(p))})
			default:
				return nil, api.InvalidParam("Library type %s is not supported by Tandem: upload a wheel or a jar to DBFS or the workspace and name it with whl or jar.", kind)
			}
		}
	}
	return out, nil
}

// safeBase is a path's last element, usable as a file name in a task's
// directory (a wheel's file name carries its package name and version,
// which installers read, so it is kept).
func safeBase(p string) string {
	b := path.Base(strings.TrimPrefix(p, "dbfs:"))
	if b == "" || b == "." || b == ".." || b == "/" {
		return "file"
	}
	return b
}

// remoteFile reports a spark-submit argument that names a file the driver
// cannot read itself: DBFS (the control plane serves it).
func remoteFile(a string) bool { return strings.HasPrefix(a, "dbfs:/") }

// submitFlags are spark-submit's options that take no value.
var submitFlags = map[string]bool{"--verbose": true, "-v": true, "--supervise": true, "--help": true, "-h": true,
	"--version": true, "--usage-error": true}

// submitFileOptions are spark-submit's options whose values are files
// (comma-separated lists).
var submitFileOptions = map[string]bool{"--py-files": true, "--jars": true, "--files": true, "--archives": true,
	"--properties-file": true}

// localizeSubmitArgs rewrites a spark_submit_task's parameters so that
// the files it names on DBFS (the application, --py-files, --jars,
// --files, --archives) are local files of the task's directory, and
// returns the files to fetch. The application's own arguments are left
// alone: a dbfs:/ path there is data the application reads itself.
func localizeSubmitArgs(args []string) ([]string, []libraryFile) {
	out := make([]string, 0, len(args))
	var files []libraryFile
	local := func(remote string) string {
		l := fmt.Sprintf("submit/%d/%s", len(files), safeBase(remote))
		files = append(files, libraryFile{Remote: remote, Local: l})
		return l
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case !strings.HasPrefix(a, "-"):
			// The application: from here on, its own arguments.
			if remoteFile(a) {
				a = local(a)
			}
			out = append(out, a)
			return append(out, args[i+1:]...), files
		case submitFlags[a]:
			out = append(out, a)
		case strings.Contains(a, "="):
			name, val, _ := strings.Cut(a, "=")
			if submitFileOptions[name] {
				val = localizeList(val, local)
			}
			out = append(out, name+"="+val)
		default:
			out = append(out, a)
			if i+1 < len(args) {
				i++
				val := args[i]
				if submitFileOptions[a] {
					val = localizeList(val, local)
				}
				out = append(out, val)
			}
		}
	}
	return out, files
}

func localizeList(val string, local func(string) string) string {
	parts := strings.Split(val, ",")
	for j, p := range parts {
		if remoteFile(p) {
			parts[j] = local(p)
		}
	}
	return strings.Join(parts, ",")
}
