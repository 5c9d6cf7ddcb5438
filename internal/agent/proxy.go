package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tandemdata/tandem/internal/agent/wire"
	"github.com/tandemdata/tandem/internal/gateway"
)

// proxyClient makes the requests to the node's own UIs. It does not follow
// redirects: the browser behind the control plane does.
var proxyClient = &http.Client{
	Timeout:       20 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// proxy makes a request the control plane asked for to a UI of this node
// and uploads the response on the agent's channel. Only the node's own
// Spark UI can be reached this way.
func (a *Agent) proxy(ctx context.Context, pr wire.ProxyRequest) {
	status, header, body, err := a.proxyLocal(ctx, pr)
	req, rerr := http.NewRequestWithContext(ctx, http.MethodPost, a.cfg.ControlURL+wire.PathProxy+pr.ID, bytes.NewReader(body))
	if rerr != nil {
		return
	}
	if err != nil {
		req.Header.Set(wire.HeaderProxyError, err.Error())
	} else {
		req.Header.Set(wire.HeaderProxyStatus, strconv.Itoa(status))
		req.Header.Set(wire.HeaderProxyHeader, gateway.EncodeProxyHeader(header))
	}
	resp, err := a.client.Do(req)
	if err != nil {
		a.log.Debug("proxy upload", "err", err)
		return
	}
	resp.Body.Close()
}

func (a *Agent) proxyLocal(ctx context.Context, pr wire.ProxyRequest) (int, http.Header, []byte, error) {
	if pr.Target == wire.TargetDecommission {
		if err := a.node.decommission(); err != nil {
			return 0, nil, nil, err
		}
		return http.StatusOK, http.Header{}, nil, nil
	}
	if pr.Target != wire.TargetSparkUI {
		return 0, nil, nil, fmt.Errorf("unknown proxy target %q", pr.Target)
	}
	port := a.node.uiPort()
	if port == 0 || a.node.assignment().Role != wire.RoleDriver {
		return 0, nil, nil, fmt.Errorf("the Spark UI is not running on this node")
	}
	if !strings.HasPrefix(pr.Path, "/") {
		pr.Path = "/" + pr.Path
	}
	u := "http://" + net.JoinHostPort(a.cfg.Host, strconv.Itoa(port)) + pr.Path
	req, err := http.NewRequestWithContext(ctx, pr.Method, u, bytes.NewReader(pr.Body))
	if err != nil {
		return 0, nil, nil, err
	}
	for k, vs := range pr.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := proxyClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return 0, nil, nil, err
	}
	return resp.StatusCode, resp.Header, body, nil
}
