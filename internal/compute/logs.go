package compute

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
)

// maxLogStream bounds one stream kept by the control plane; what an agent
// sends beyond it is acknowledged and dropped (delivery to a cluster's log
// destination is the place for long histories).
const maxLogStream = 256 << 20

// logPath is where a stream of an instance serving a cluster is kept.
func (s *Service) logPath(clusterID, instanceID, stream string) (string, error) {
	if !validLogStream(stream) || !validLogStream(clusterID) || !validLogStream(instanceID) {
		return "", fmt.Errorf("invalid log stream %q", stream)
	}
	if s.LogDir == "" {
		return "", errors.New("no log directory")
	}
	return filepath.Join(s.LogDir, clusterID, instanceID, filepath.FromSlash(stream)), nil
}

// writeLog writes an agent's chunk at its offset and returns the stream's
// size: a chunk sent twice lands on itself; a chunk past the end (the
// control plane lost data) is not written, and the size tells the agent
// where to resend from.
func (s *Service) writeLog(clusterID, instanceID, stream string, off int64, data []byte) (int64, error) {
	p, err := s.logPath(clusterID, instanceID, stream)
	if err != nil {
		return off + int64(len(data)), nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return 0, err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := st.Size()
	if off > size {
		return size, nil
	}
	end := off + int64(len(data))
	if end > maxLogStream {
		return end, nil
	}
	if end > size {
		if _, err := f.WriteAt(data, off); err != nil {
			return size, err
		}
		size = end
	}
	return size, nil
}

// readLog reads up to n bytes of a kept stream from off; it also returns
// the stream's size.
func (s *Service) readLog(clusterID, instanceID, stream string, off int64, n int) ([]byte, int64, error) {
	p, err := s.logPath(clusterID, instanceID, stream)
	if err != nil {
		return nil, 0, err
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	if off < 0 {
		off = max(0, st.Size()+off)
	}
	if off >= st.Size() {
		return nil, st.Size(), nil
	}
	buf := make([]byte, min(int64(n), st.Size()-off))
	m, err := f.ReadAt(buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, 0, err
	}
	return buf[:m], st.Size(), nil
}

// driverLogInstance returns the instance whose driver logs a cluster has:
// its driver now, else the last one that kept driver logs.
func (s *Service) driverLogInstance(clusterID, current string) string {
	if current != "" {
		return current
	}
	dir := filepath.Join(s.LogDir, clusterID)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	type cand struct {
		id  string
		mod int64
	}
	var cs []cand
	for _, e := range entries {
		st, err := os.Stat(filepath.Join(dir, e.Name(), "driver"))
		if err == nil {
			cs = append(cs, cand{e.Name(), st.ModTime().UnixNano()})
		}
	}
	if len(cs) == 0 {
		return ""
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].mod > cs[j].mod })
	return cs[0].id
}
