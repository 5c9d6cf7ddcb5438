package replication

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// PeerSource reads the peer region's change log and shared keys over the
// mutual-TLS link.
type PeerSource struct {
	Peer *Peer
	// Region and Epoch describe this region to the peer on every call.
	Region string
	Epoch  func() int64
}

// Changes asks for up to limit changes after the given sequence number,
// letting the peer hold the call up to wait when it has none.
func (s *PeerSource) Changes(ctx context.Context, after int64, limit int, wait time.Duration) (Batch, error) {
	ctx, cancel := context.WithTimeout(ctx, wait+15*time.Second)
	defer cancel()
	q := url.Values{}
	q.Set("after", strconv.FormatInt(after, 10))
	q.Set("limit", strconv.Itoa(limit))
	q.Set("wait_ms", strconv.FormatInt(wait.Milliseconds(), 10))
	var b Batch
	err := s.call(ctx, http.MethodGet, ChangesPath+"?"+q.Encode(), nil, &b)
	return b, err
}

// Keys fetches the named shared keys, encrypted end to end to a key made
// for this call.
func (s *PeerSource) Keys(ctx context.Context, names []string) (map[string][][]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	var resp keyResponse
	if err := s.call(ctx, http.MethodPost, KeysPath, keyRequest{Names: names, PublicKey: priv.PublicKey().Bytes()}, &resp); err != nil {
		return nil, err
	}
	return openKeys(priv, resp)
}

func (s *PeerSource) call(ctx context.Context, method, path string, body, out any) error {
	client, err := s.Peer.Client()
	if err != nil {
		return err
	}
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.Peer.URL+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderRegion, s.Region)
	if s.Epoch != nil {
		req.Header.Set(HeaderEpoch, strconv.FormatInt(s.Epoch(), 10))
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read the peer's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e errorBody
		json.Unmarshal(b, &e)
		return &PeerError{Status: resp.StatusCode, Code: e.ErrorCode, Message: e.Message}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decode the peer's answer: %w", err)
	}
	return nil
}
