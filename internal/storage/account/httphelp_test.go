package account_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"testing"

	"github.com/tandemdata/tandem/internal/testenv"
)

func httpNewRequest(method, url string, body []byte) (*http.Request, error) {
	return http.NewRequest(method, url, bytes.NewReader(body))
}

func kvHTTP(t *testing.T, kv *testenv.KeyVaultServer) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(kv.CAPEM(t)))
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}
