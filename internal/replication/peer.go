package replication

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/pki"
)

// Peer is this region's end of the mutual-TLS link with its peer region.
// The two regions trust each other explicitly and nothing else: each one
// presents a client certificate issued by its own CA and trusts the peer's
// CA (exchanged beforehand as a file) for the peer's server certificate and
// for the peer's client certificate. Certificates issued by a region's own
// CA (its agents) are never taken for the peer.
//
// The peer's CA file is read again when it changes, so two regions can be
// set up in either order: the primary may name the secondary's CA file
// before the secondary has created it.
type Peer struct {
	// URL is the peer region's base URL (https://host:port).
	URL    string
	caFile string
	cert   tls.Certificate

	mu      sync.Mutex
	loaded  time.Time // mod time of the CA file last read
	cas     []*x509.Certificate
	client  *http.Client
	loadErr error
}

// PeerClientName is the common name of the client certificate a region
// presents to its peer.
func PeerClientName(region string) string { return "tandem peer " + region }

// NewPeer prepares the link to the peer at url whose CA certificate is in
// caFile, presenting a client certificate issued now by ca.
func NewPeer(url, caFile string, ca *pki.CA, region string) (*Peer, error) {
	url = strings.TrimRight(url, "/")
	if !strings.HasPrefix(url, "https://") {
		return nil, fmt.Errorf("peer URL %q must start with https://", url)
	}
	if caFile == "" {
		return nil, errors.New("the peer region's CA file is required (its DATA_DIR/tls/ca.pem)")
	}
	iss, err := ca.IssueClient(PeerClientName(region), 397*24*time.Hour)
	if err != nil {
		return nil, err
	}
	cert, err := iss.TLS()
	if err != nil {
		return nil, err
	}
	p := &Peer{URL: url, caFile: caFile, cert: cert}
	p.reload()
	return p, nil
}

// reload reads the CA file again if it changed. It keeps the last good
// certificates when the file is missing or broken.
func (p *Peer) reload() {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, err := os.Stat(p.caFile)
	if err != nil {
		p.loadErr = fmt.Errorf("peer CA file: %w", err)
		return
	}
	if !st.ModTime().After(p.loaded) && p.cas != nil {
		return
	}
	b, err := os.ReadFile(p.caFile)
	if err != nil {
		p.loadErr = fmt.Errorf("peer CA file: %w", err)
		return
	}
	var cas []*x509.Certificate
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err == nil && c.IsCA {
			cas = append(cas, c)
		}
	}
	if len(cas) == 0 {
		p.loadErr = fmt.Errorf("peer CA file %s holds no CA certificate", p.caFile)
		return
	}
	p.cas, p.loaded, p.loadErr, p.client = cas, st.ModTime(), nil, nil
}

// CAs returns the peer's CA certificates (nil until the file exists).
func (p *Peer) CAs() []*x509.Certificate {
	p.reload()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cas
}

// Pool adds the peer's CA certificates to a copy of base (the region's own
// client CAs) for the server's TLS configuration.
func (p *Peer) Pool(base *x509.CertPool) *x509.CertPool {
	pool := base.Clone()
	for _, c := range p.CAs() {
		pool.AddCert(c)
	}
	return pool
}

// Client returns an HTTP client for calls to the peer: it trusts only the
// peer's CA and presents this region's peer certificate. Calls set their own
// deadlines through their contexts.
func (p *Peer) Client() (*http.Client, error) {
	p.reload()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cas == nil {
		return nil, p.loadErr
	}
	if p.client == nil {
		roots := x509.NewCertPool()
		for _, c := range p.cas {
			roots.AddCert(c)
		}
		tr := &http.Transport{
			TLSClientConfig:     pki.ClientConfig(roots, &p.cert),
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 10 * time.Second,
			// A cut link must not hang a call longer than its context.
			ResponseHeaderTimeout: 0,
		}
		p.client = &http.Client{Transport: tr}
	}
	return p.client, nil
}

// Authenticate checks that r came from the peer region: a client
// certificate that the TLS handshake verified up to one of the peer's CA
// certificates. The region's own CA, which issues agent certificates, does
// not count.
func (p *Peer) Authenticate(r *http.Request) error {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return api.Errorf(api.Unauthenticated, "This endpoint serves the peer region only: present the peer region's client certificate (mutual TLS).")
	}
	cas := p.CAs()
	for _, chain := range r.TLS.VerifiedChains {
		root := chain[len(chain)-1]
		for _, ca := range cas {
			if bytes.Equal(root.Raw, ca.Raw) {
				return nil
			}
		}
	}
	return api.Errorf(api.PermissionDenied, "The client certificate was not issued by the peer region's CA.")
}
