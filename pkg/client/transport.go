package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// NewHTTPClient returns an *http.Client over [NewTransport]. Pass it as the Transport of azcore.ClientOptions.
func NewHTTPClient(caFile string) (*http.Client, error) {
	tr, err := NewTransport(caFile)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: tr}, nil
}

// NewTransport returns a transport for a pool: TLS 1.2 or later, trusting only the CA certificates in the PEM file
// caFile (the system's roots when caFile is empty), HTTP/2 when the pool offers it, and dialing 127.0.0.1 for
// "localhost" and every name under ".localhost" (see [LoopbackAddr]). Such names bypass any proxy from the
// environment. Callers may tune the copy they get (connection limits, protocols).
func NewTransport(caFile string) (*http.Transport, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read the pool's CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("read the pool's CA: %s holds no PEM certificate", caFile)
		}
		tlsCfg.RootCAs = pool
	}
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	tr.ForceAttemptHTTP2 = true
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return dialer.DialContext(ctx, network, LoopbackAddr(addr))
	}
	tr.Proxy = func(r *http.Request) (*url.URL, error) {
		if isLocalhost(r.URL.Hostname()) {
			return nil, nil
		}
		return http.ProxyFromEnvironment(r)
	}
	return tr, nil
}

// LoopbackAddr returns addr ("host:port") with the host replaced by 127.0.0.1 when it is "localhost" or a name
// under ".localhost", which RFC 6761 reserves for the loopback address but Go's resolver does not resolve; any
// other address is returned as it is.
func LoopbackAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || !isLocalhost(host) {
		return addr
	}
	return net.JoinHostPort("127.0.0.1", port)
}

// isLocalhost reports whether host is "localhost" or a name under ".localhost", in any case, with or without the
// final dot.
func isLocalhost(host string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	return h == "localhost" || strings.HasSuffix(h, ".localhost")
}
