package client

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

func TestClusterStatus(t *testing.T) {
	p := newFakePool(t)
	cc := p.client().Cluster()
	answer := map[string]any{"leaderId": "node-1", "answeredBy": "node-2", "nodes": []map[string]any{
		{"nodeId": "node-1", "raftAddr": "127.0.0.1:8444", "nodeAddr": "127.0.0.1:8445", "url": "https://contoso.managedhsm.localhost:8443",
			"suffrage": "Voter", "role": "Leader", "term": 3, "lastIndex": 42, "commitIndex": 42, "appliedIndex": 42, "lag": 0,
			"lastContactMs": 0, "hsmOk": true, "hsmError": "", "reachable": true, "error": "", "version": "v1.2.3"},
		{"nodeId": "node-2", "raftAddr": "127.0.0.1:8544", "nodeAddr": "127.0.0.1:8545", "suffrage": "Voter", "role": "Follower",
			"term": 3, "lastIndex": 42, "commitIndex": 41, "appliedIndex": 40, "lag": 2, "lastContactMs": 12,
			"hsmOk": false, "hsmError": "CKR_DEVICE_ERROR", "reachable": true, "version": "v1.2.3"},
		{"nodeId": "node-3", "raftAddr": "127.0.0.1:8644", "suffrage": "Voter", "lastContactMs": -1, "reachable": false,
			"error": "connection refused"},
	}}
	var got request
	p.handle("GET /cluster/status", recordInto(t, &got, 200, answer))
	s, err := cc.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got.method != "GET" || got.apiVersion != PrincipalsAPIVersion || got.body != nil {
		t.Errorf("request %+v", got)
	}
	want := &ClusterStatus{LeaderID: "node-1", AnsweredBy: "node-2", Nodes: []NodeStatus{
		{NodeID: "node-1", RaftAddr: "127.0.0.1:8444", NodeAddr: "127.0.0.1:8445", URL: "https://contoso.managedhsm.localhost:8443",
			Suffrage: "Voter", Role: "Leader", Term: 3, LastIndex: 42, CommitIndex: 42, AppliedIndex: 42, HSMOk: true, Reachable: true,
			Version: "v1.2.3"},
		{NodeID: "node-2", RaftAddr: "127.0.0.1:8544", NodeAddr: "127.0.0.1:8545", Suffrage: "Voter", Role: "Follower", Term: 3,
			LastIndex: 42, CommitIndex: 41, AppliedIndex: 40, Lag: 2, LastContactMs: 12, HSMError: "CKR_DEVICE_ERROR", Reachable: true,
			Version: "v1.2.3"},
		{NodeID: "node-3", RaftAddr: "127.0.0.1:8644", Suffrage: "Voter", LastContactMs: -1, Error: "connection refused"},
	}}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("status\n%+v\nwant\n%+v", s, want)
	}
	if l := s.Leader(); l == nil || l.NodeID != "node-1" {
		t.Errorf("Leader() = %+v", l)
	}

	// No leader, no nodes: Leader is nil and Nodes an empty slice.
	p.handle("GET /cluster/status", recordInto(t, &got, 200, map[string]any{"answeredBy": "node-1", "nodes": nil}))
	s, err = cc.Status(context.Background())
	if err != nil || s.Nodes == nil || len(s.Nodes) != 0 || s.Leader() != nil {
		t.Errorf("empty status %+v, %v", s, err)
	}

	// An answer that is not a status is an error, not an empty status.
	p.handle("GET /cluster/status", recordInto(t, &got, 200, map[string]any{}))
	if _, err := cc.Status(context.Background()); err == nil || !strings.Contains(err.Error(), `no "answeredBy"`) {
		t.Errorf("empty answer: %v", err)
	}

	p.handle("GET /cluster/status", recordInto(t, &got, 403, map[string]any{"error": map[string]string{"code": "Forbidden",
		"message": "Action: 'Microsoft.KeyVault/managedHsm/securitydomain/download/read'"}}))
	_, err = cc.Status(context.Background())
	if e, ok := AsError(err); !ok || e.StatusCode != 403 || e.Code != "Forbidden" || !strings.HasPrefix(err.Error(), "cluster status: Forbidden (HTTP 403") {
		t.Errorf("403: %v", err)
	}
}

func TestClusterRemoveNode(t *testing.T) {
	p := newFakePool(t)
	cc := p.client().Cluster()
	ctx := context.Background()
	var got request
	p.handle("DELETE /cluster/nodes/node-2", recordInto(t, &got, 204, nil))
	if err := cc.RemoveNode(ctx, "node-2"); err != nil {
		t.Fatal(err)
	}
	if got.method != "DELETE" || got.apiVersion != PrincipalsAPIVersion || got.body != nil {
		t.Errorf("request %+v", got)
	}
	// A space is escaped; r.URL.Path is the decoded path.
	p.handle("DELETE /cluster/nodes/node 2", recordInto(t, &got, 204, nil))
	if err := cc.RemoveNode(ctx, "node 2"); err != nil {
		t.Errorf("node 2: %v", err)
	}

	p.handle("DELETE /cluster/nodes/node-9", recordInto(t, &got, 404, map[string]any{"error": map[string]string{"code": "NotFound",
		"message": `node "node-9" is not a member of the pool`}}))
	err := cc.RemoveNode(ctx, "node-9")
	if e, ok := AsError(err); !ok || e.StatusCode != 404 || !strings.Contains(err.Error(), `cluster remove: NotFound (HTTP 404 Not Found): node "node-9"`) {
		t.Errorf("unknown node: %v", err)
	}

	// 200 is not the answer of a removal.
	p.handle("DELETE /cluster/nodes/odd", recordInto(t, &got, 200, map[string]any{}))
	if err := cc.RemoveNode(ctx, "odd"); err == nil {
		t.Error("200: no error")
	}

	for _, id := range []string{"", ".", "..", "a/b", "a?b", `a\b`} {
		if err := cc.RemoveNode(ctx, id); err == nil || !strings.Contains(err.Error(), "cluster remove: node ID") {
			t.Errorf("RemoveNode(%q): %v", id, err)
		}
	}
	log, _ := p.requests()
	for _, l := range log {
		if strings.Contains(l, "/a") || strings.HasSuffix(l, "/cluster/nodes/ ") {
			t.Errorf("a bad ID was sent: %s", l)
		}
	}
}

// TestClusterRemoveNodeNotRetried checks that a removal is sent once, even when it fails in a way the SDK retries.
func TestClusterRemoveNodeNotRetried(t *testing.T) {
	p := newFakePool(t)
	c, err := New(p.file(), &Options{Retry: policy.RetryOptions{MaxRetries: 3, RetryDelay: 1, MaxRetryDelay: 1}})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	p.handle("DELETE /cluster/nodes/node-2", func(w http.ResponseWriter, _ *http.Request) {
		n++
		writeJSON(w, 503, map[string]any{"error": map[string]string{"code": "ServiceUnavailable", "message": "no leader"}})
	})
	err = c.Cluster().RemoveNode(context.Background(), "node-2")
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != 503 || n != 1 {
		t.Errorf("error %v after %d requests, want one 503", err, n)
	}
}

func TestClusterJoinToken(t *testing.T) {
	p := newFakePool(t)
	var got request
	p.handle("POST /cluster/join-tokens", recordInto(t, &got, 201, map[string]any{"token": "hsmpool-join.v1.abc.def", "expires": 1798761600}))
	tok, err := p.client().Cluster().CreateJoinToken(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if tok.Token.Reveal() != "hsmpool-join.v1.abc.def" || tok.ExpiresAt().Unix() != 1798761600 || got.body == nil {
		t.Errorf("token %+v, request %+v", tok, got)
	}
	if strings.Contains(tok.Token.String(), "abc") {
		t.Errorf("the token prints: %s", tok.Token)
	}
}

func TestNewClusterClient(t *testing.T) {
	if _, err := NewClusterClient("http://contoso.managedhsm.localhost", nil, nil); err == nil || !strings.Contains(err.Error(), "want an https URL") {
		t.Errorf("http URL: %v", err)
	}
	p := newFakePool(t)
	c := p.client()
	cc, err := NewClusterClient(p.url(), c.Credential(), &ClusterClientOptions{ClientOptions: azcore.ClientOptions{Transport: c.HTTPClient()}})
	if err != nil {
		t.Fatal(err)
	}
	var got request
	p.handle("DELETE /cluster/nodes/node-2", recordInto(t, &got, 204, nil))
	if err := cc.RemoveNode(context.Background(), "node-2"); err != nil || got.method != "DELETE" {
		t.Errorf("RemoveNode: %v, request %+v", err, got)
	}
}
