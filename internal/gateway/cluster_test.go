package gateway

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/hsmpool/hsmpool/internal/audit"
	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

func TestClusterStatus(t *testing.T) {
	e := newEnv(t)
	e.core.on("Cluster/GetStatus", func(proto.Message) (proto.Message, error) {
		return &pb.ClusterStatus{LeaderId: "node-1", AnsweredBy: "node-2", Nodes: []*pb.NodeStatus{
			{NodeId: "node-1", RaftAddr: "127.0.0.1:8444", NodeAddr: "127.0.0.1:8445", Url: "https://contoso.managedhsm.localhost:8443",
				Suffrage: "Voter", Role: "Leader", Term: 3, LastIndex: 42, CommitIndex: 42, AppliedIndex: 42, LastContactMs: 0,
				HsmOk: true, Reachable: true, Version: "v1.2.3"},
			{NodeId: "node-3", RaftAddr: "127.0.0.1:8544", Suffrage: "Voter", Lag: 0, LastContactMs: -1,
				HsmError: "", Reachable: false, Error: "dial 127.0.0.1:8545: connection refused"},
		}}, nil
	})
	res := e.do("GET", "/cluster/status"+v, "")
	if res.status != http.StatusOK {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	want := `{"leaderId":"node-1","answeredBy":"node-2","nodes":[` +
		`{"nodeId":"node-1","raftAddr":"127.0.0.1:8444","nodeAddr":"127.0.0.1:8445","url":"https://contoso.managedhsm.localhost:8443",` +
		`"suffrage":"Voter","role":"Leader","term":3,"lastIndex":42,"commitIndex":42,"appliedIndex":42,"lag":0,"lastContactMs":0,` +
		`"hsmOk":true,"hsmError":"","reachable":true,"error":"","version":"v1.2.3"},` +
		`{"nodeId":"node-3","raftAddr":"127.0.0.1:8544","nodeAddr":"","url":"","suffrage":"Voter","role":"","term":0,"lastIndex":0,` +
		`"commitIndex":0,"appliedIndex":0,"lag":0,"lastContactMs":-1,"hsmOk":false,"hsmError":"","reachable":false,` +
		`"error":"dial 127.0.0.1:8545: connection refused","version":""}]}` + "\n"
	if string(res.body) != want {
		t.Errorf("body\n%s\nwant\n%s", res.body, want)
	}
	if ct := res.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	calls := e.core.reset()
	if len(calls) != 1 || calls[0].method != "Cluster/GetStatus" || calls[0].md.Get("authorization")[0] != "Bearer "+testToken {
		t.Errorf("core calls %v", calls)
	}

	// No nodes is an empty array, never null: clients range over it.
	e.core.on("Cluster/GetStatus", func(proto.Message) (proto.Message, error) { return &pb.ClusterStatus{AnsweredBy: "node-1"}, nil })
	res = e.do("GET", "/cluster/status/"+v, "")
	if want := `{"leaderId":"","answeredBy":"node-1","nodes":[]}` + "\n"; res.status != 200 || string(res.body) != want {
		t.Errorf("no nodes: %d %s, want %s", res.status, res.body, want)
	}
}

func TestRemoveNode(t *testing.T) {
	e := newEnv(t)
	e.core.on("Cluster/RemoveNode", func(req proto.Message) (proto.Message, error) {
		switch id := req.(*pb.RemoveNodeRequest).NodeId; id {
		case "node-2", "node 2/x":
			return &pb.RemoveNodeResponse{}, nil
		case "leader":
			return nil, rpcerr.Status(fmt.Errorf("%w: no leader", fault.NotLeader))
		case "denied":
			return nil, rpcerr.Status(rpcerr.New(fault.Forbidden, "Forbidden", "Caller is not authorized to perform action on resource.\r\n"+
				"Action: 'Microsoft.KeyVault/managedHsm/securitydomain/download/action'"))
		default:
			return nil, rpcerr.Status(rpcerr.New(fault.NotFound, "NotFound", "node %q is not a member of the pool", id))
		}
	})
	for _, tc := range []struct {
		target string
		id     string
		status int
		code   string
	}{
		{"/cluster/nodes/node-2" + v, "node-2", 204, ""},
		{"/CLUSTER/Nodes/node-2/" + v, "node-2", 204, ""},
		{"/cluster/nodes/node%202%2Fx" + v, "node 2/x", 204, ""},
		{"/cluster/nodes/node-9" + v, "node-9", 404, "NotFound"},
		{"/cluster/nodes/denied" + v, "denied", 403, "Forbidden"},
		{"/cluster/nodes/leader" + v, "leader", 503, ""},
	} {
		t.Run(tc.target, func(t *testing.T) {
			res := e.do("DELETE", tc.target, "")
			calls := e.core.reset()
			if len(calls) != 1 || !proto.Equal(calls[0].req, &pb.RemoveNodeRequest{NodeId: tc.id}) {
				t.Fatalf("core calls %v, want RemoveNode %q", calls, tc.id)
			}
			if res.status != tc.status {
				t.Fatalf("status %d, want %d: %s", res.status, tc.status, res.body)
			}
			if tc.status == 204 {
				if len(res.body) != 0 {
					t.Errorf("204 with a body: %q", res.body)
				}
				return
			}
			code, msg, _ := res.errorOf(t) // the Azure error shape
			if tc.code != "" && code != tc.code {
				t.Errorf("code %q, want %q", code, tc.code)
			}
			if !strings.HasSuffix(msg, "(Activity ID: "+res.header.Get("x-ms-request-id")+")") {
				t.Errorf("message %q has no activity ID", msg)
			}
		})
	}
	if res := e.do("DELETE", "/cluster/nodes/leader"+v, ""); res.header.Get("Retry-After") == "" {
		t.Errorf("503 without Retry-After: %v", res.header)
	}
}

// TestClusterRequests checks what the gateway refuses before the core on the cluster paths.
func TestClusterRequests(t *testing.T) {
	a := &fakeAuditor{}
	e := newEnv(t, func(c *Config) { c.Audit = a })
	for _, tc := range []struct {
		method, target string
		status         int
		msg            string
	}{
		{"GET", "/cluster/status", 400, "The api-version query parameter is required."},
		{"DELETE", "/cluster/nodes/node-2?api-version=1999", 400, "The specified version (1999) is not recognized."},
		{"POST", "/cluster/status" + v, 405, "Method POST is not allowed here; use GET."},
		{"GET", "/cluster/nodes/node-2" + v, 405, "Method GET is not allowed here; use DELETE."},
		{"DELETE", "/cluster/nodes" + v, 404, "There is no DELETE operation at this path."},
		{"DELETE", "/cluster/nodes/a/b" + v, 404, "There is no DELETE operation at this path."},
	} {
		res := e.do(tc.method, tc.target, "")
		if res.status != tc.status {
			t.Errorf("%s %s: status %d, want %d: %s", tc.method, tc.target, res.status, tc.status, res.body)
			continue
		}
		if _, msg, _ := res.errorOf(t); !strings.HasPrefix(msg, tc.msg) {
			t.Errorf("%s %s: message %q, want %q", tc.method, tc.target, msg, tc.msg)
		}
	}
	if calls := e.core.reset(); len(calls) != 0 {
		t.Errorf("the core was called: %v", calls)
	}
	wantOps := []string{"GetClusterStatus", "RemoveNode", "Unrouted", "Unrouted", "Unrouted", "Unrouted"}
	if len(a.entries) != len(wantOps) {
		t.Fatalf("%d audit entries, want %d: %+v", len(a.entries), len(wantOps), a.entries)
	}
	for i, op := range wantOps {
		if got := a.entries[i]; got.Operation != op || got.Outcome != audit.OutcomeFailed {
			t.Errorf("audit entry %d: %+v, want %s failed", i, got, op)
		}
	}
}

// TestClusterWithoutClient checks the answer of a gateway built without the cluster API.
func TestClusterWithoutClient(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Cluster = nil })
	for _, r := range [][2]string{{"GET", "/cluster/status" + v}, {"DELETE", "/cluster/nodes/node-2" + v}} {
		res := e.do(r[0], r[1], "")
		if code, msg, _ := res.errorOf(t); res.status != 400 || code != "BadParameter" || !strings.HasPrefix(msg, "This pool has no cluster API.") {
			t.Errorf("%s %s: %d %s %s", r[0], r[1], res.status, code, msg)
		}
	}
}
