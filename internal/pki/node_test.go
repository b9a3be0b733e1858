package pki

import (
	"crypto/x509"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestIssueNode(t *testing.T) {
	ca := newTestCA(t)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	for _, id := range []string{"node-1", "n", "odd/id?with#chars%and:more", strings.Repeat("x", 128)} {
		t.Run(id[:min(len(id), 16)], func(t *testing.T) {
			certPEM, keyPEM, err := ca.IssueNode(NodeOptions{NodeID: id, Names: []string{"127.0.0.1", "node1.example"}, Now: testNow})
			if err != nil {
				t.Fatal(err)
			}
			if len(keyPEM) == 0 {
				t.Fatal("no key")
			}
			leaf := parseLeaf(t, certPEM)
			if !leaf.NotAfter.Equal(testNow.Add(NodeCertValidity)) {
				t.Errorf("NotAfter = %v, want now + NodeCertValidity", leaf.NotAfter)
			}
			if len(leaf.URIs) != 1 || leaf.URIs[0].Scheme != "hsmpool" || leaf.URIs[0].Host != "node" {
				t.Errorf("URIs = %v, want one hsmpool://node/ URI", leaf.URIs)
			}
			if leaf.Subject.CommonName != id || len(leaf.IPAddresses) != 1 || len(leaf.DNSNames) != 1 {
				t.Errorf("CN %q, IPs %v, DNS %v", leaf.Subject.CommonName, leaf.IPAddresses, leaf.DNSNames)
			}
			for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
				got, err := VerifyNode(roots, []*x509.Certificate{leaf}, usage, testNow)
				if err != nil || got != id {
					t.Errorf("VerifyNode(usage %v) = %q, %v; want %q", usage, got, err, id)
				}
			}
		})
	}
	if uri, _ := NodeURI("node-1"); uri.String() != "hsmpool://node/node-1" {
		t.Errorf("NodeURI(node-1) = %s", uri)
	}
}

func TestIssueNodeRejects(t *testing.T) {
	ca := newTestCA(t)
	for name, opt := range map[string]NodeOptions{
		"empty id":     {NodeID: "", Names: []string{"127.0.0.1"}},
		"space in id":  {NodeID: "node 1", Names: []string{"127.0.0.1"}},
		"long id":      {NodeID: strings.Repeat("x", 129), Names: []string{"127.0.0.1"}},
		"no names":     {NodeID: "node-1"},
		"bad name":     {NodeID: "node-1", Names: []string{"not a name"}},
		"negative ttl": {NodeID: "node-1", Names: []string{"127.0.0.1"}, Validity: -time.Hour},
	} {
		t.Run(name, func(t *testing.T) {
			opt.Now = testNow
			if _, _, err := ca.IssueNode(opt); err == nil {
				t.Errorf("IssueNode(%+v) succeeded", opt)
			}
		})
	}
}

func TestVerifyNodeRejects(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	node := func(ca *CA, opt NodeOptions) *x509.Certificate {
		t.Helper()
		if opt.Now.IsZero() {
			opt.Now = testNow
		}
		certPEM, _, err := ca.IssueNode(opt)
		if err != nil {
			t.Fatal(err)
		}
		return parseLeaf(t, certPEM)
	}
	leaf := func(opt LeafOptions) *x509.Certificate {
		t.Helper()
		opt.Now, opt.Validity = testNow, time.Hour
		certPEM, _, err := ca.Issue(opt)
		if err != nil {
			t.Fatal(err)
		}
		return parseLeaf(t, certPEM)
	}
	good := node(ca, NodeOptions{NodeID: "node-1", Names: []string{"127.0.0.1"}})
	plainLeaf := leaf(LeafOptions{Names: []string{"127.0.0.1"}, Server: true, Client: true})
	tests := []struct {
		name  string
		roots *x509.CertPool
		chain []*x509.Certificate
		usage x509.ExtKeyUsage
		now   time.Time
		want  string
	}{
		{"other ca", roots, []*x509.Certificate{node(other, NodeOptions{NodeID: "node-1", Names: []string{"127.0.0.1"}})}, x509.ExtKeyUsageClientAuth, testNow, "unknown authority"},
		{"no roots", nil, []*x509.Certificate{good}, x509.ExtKeyUsageClientAuth, testNow, "no pool ca"},
		{"no chain", roots, nil, x509.ExtKeyUsageClientAuth, testNow, "no certificate"},
		{"expired", roots, []*x509.Certificate{good}, x509.ExtKeyUsageClientAuth, testNow.Add(NodeCertValidity + time.Hour), "expired"},
		{"server-only leaf as client", roots, []*x509.Certificate{leaf(LeafOptions{Names: []string{"127.0.0.1"}, Server: true})}, x509.ExtKeyUsageClientAuth, testNow, "usage"},
		{"leaf without node uri", roots, []*x509.Certificate{plainLeaf}, x509.ExtKeyUsageServerAuth, testNow, "names no node"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := VerifyNode(tt.roots, tt.chain, tt.usage, tt.now)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("VerifyNode = %q, %v; want an error with %q", id, err, tt.want)
			}
		})
	}

	// NodeID alone: two node URIs, or a malformed one, name no node.
	c := *good
	u1, _ := NodeURI("a")
	u2, _ := NodeURI("b")
	for name, uris := range map[string][]*url.URL{
		"two nodes":   {u1, u2},
		"query":       {{Scheme: "hsmpool", Host: "node", Path: "/a", RawQuery: "x=1"}},
		"empty id":    {{Scheme: "hsmpool", Host: "node", Path: "/"}},
		"space in id": {{Scheme: "hsmpool", Host: "node", Path: "/a b"}},
	} {
		c.URIs = uris
		if id, err := NodeID(&c); err == nil {
			t.Errorf("NodeID with %s = %q, want an error", name, id)
		}
	}
	c.URIs = []*url.URL{{Scheme: "spiffe", Host: "example.org", Path: "/x"}, u2}
	if id, err := NodeID(&c); err != nil || id != "b" {
		t.Errorf("NodeID with a foreign URI and node b = %q, %v", id, err)
	}
}
