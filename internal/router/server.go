package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/tandemdata/tandem/internal/pki"
)

// Server runs a Router on a TLS listener with a certificate of the
// deployment's CA (DataDir/tls/ca.pem, made on first start), which clients
// trust for the workspace URL.
type Server struct {
	Router *Router
	// CAFile is the deployment CA clients trust.
	CAFile string

	http     *http.Server
	listener net.Listener
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// Listen prepares the router's TLS certificate in dataDir and listens on
// addr; Serve starts serving.
func Listen(r *Router, dataDir, addr string, hosts []string, log *slog.Logger) (*Server, error) {
	dir := filepath.Join(dataDir, "tls")
	ca, err := pki.LoadOrCreateCA(dir, "Tandem deployment CA")
	if err != nil {
		return nil, err
	}
	all := []string{"localhost", "127.0.0.1", "::1"}
	if h, _, err := net.SplitHostPort(addr); err == nil && h != "" && h != "0.0.0.0" && h != "::" {
		all = append(all, h)
	}
	cert, err := ca.ServerCertificate(dir, "tandem router", append(all, hosts...))
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Server{Router: r, CAFile: filepath.Join(dir, pki.CAFile), listener: l}
	s.http = &http.Server{
		Handler:           r,
		TLSConfig:         pki.ServerConfig(cert, nil),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// Serve checks the regions and serves until Close.
func (s *Server) Serve() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		s.Router.Run(ctx)
	}()
	go func() {
		defer s.wg.Done()
		if err := s.http.ServeTLS(s.listener, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.Router.log.Error("router: serve", "err", err)
		}
	}()
}

// URL is the workspace URL the router serves.
func (s *Server) URL() string { return "https://" + s.listener.Addr().String() }

// Close stops serving, letting calls in flight finish (up to a bound).
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.http.Shutdown(ctx)
	if err != nil {
		// Past the bound, a call in flight loses its connection.
		s.http.Close()
	}
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	return err
}
