package keyvault

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tandemdata/tandem/internal/atomicfile"
	"github.com/tandemdata/tandem/internal/pki"
)

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func unb64(s string) ([]byte, error) {
	if b, err := base64.RawURLEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.URLEncoding.DecodeString(s)
}

// TokenEnv may hold the vault's bearer token; otherwise it is read from (or
// created in) DATA_DIR/token.
const TokenEnv = "TANDEM_KEYVAULT_TOKEN"

// Config configures a served vault.
type Config struct {
	DataDir string
	Listen  string
	Log     *slog.Logger
}

// Server is a running vault.
type Server struct {
	URL       string
	CAFile    string
	TokenFile string
	srv       *http.Server
	l         net.Listener
}

// LoadToken returns the token from TANDEM_KEYVAULT_TOKEN or dir/token,
// creating the file on first start.
func LoadToken(dir string) (token, file string, err error) {
	if t := strings.TrimSpace(os.Getenv(TokenEnv)); t != "" {
		return t, "", nil
	}
	file = filepath.Join(dir, "token")
	if b, err := os.ReadFile(file); err == nil {
		return strings.TrimSpace(string(b)), file, nil
	}
	raw := make([]byte, 24)
	rand.Read(raw)
	token = "tkv-" + hex.EncodeToString(raw)
	if err := atomicfile.Write(file, []byte(token+"\n"), 0o600); err != nil {
		return "", "", err
	}
	return token, file, nil
}

// Start opens the vault in cfg.DataDir and serves it over TLS from the
// vault's own CA.
func Start(cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	v, err := Open(filepath.Join(cfg.DataDir, "data"))
	if err != nil {
		return nil, err
	}
	token, tokenFile, err := LoadToken(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("key vault token: %w", err)
	}
	tlsDir := filepath.Join(cfg.DataDir, "tls")
	ca, err := pki.LoadOrCreateCA(tlsDir, "Tandem key vault CA")
	if err != nil {
		return nil, err
	}
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, _, err := net.SplitHostPort(cfg.Listen); err == nil && h != "" && h != "0.0.0.0" && h != "::" {
		hosts = append(hosts, h)
	}
	cert, err := ca.ServerCertificate(tlsDir, "tandem keyvault", hosts)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	s := &Server{URL: "https://" + l.Addr().String(), CAFile: filepath.Join(tlsDir, pki.CAFile), TokenFile: tokenFile, l: l}
	s.srv = &http.Server{Handler: NewHandler(v, token), TLSConfig: pki.ServerConfig(cert, nil), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(cfg.Log.Handler(), slog.LevelDebug)}
	go func() {
		if err := s.srv.ServeTLS(l, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cfg.Log.Error("key vault stopped serving", "err", err)
		}
	}()
	return s, nil
}

// Close stops serving.
func (s *Server) Close(ctx context.Context) error { return s.srv.Shutdown(ctx) }
