package gateway

import (
	"net/http"

	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// The pool's own cluster API (docs/cluster-api.md): join tokens, the status of every node, and
// the removal of a node. Azure has nothing like it; pkg/client and "hsmpool cluster" use it.

// errNoCluster answers the cluster paths of a gateway built without a Cluster client.
var errNoCluster = newError(http.StatusBadRequest, "BadParameter", "This pool has no cluster API.")

// createJoinToken is POST /cluster/join-tokens: 201 with the token, shown once.
func (g *Gateway) createJoinToken(c *call) (any, error) {
	if g.cluster == nil {
		return nil, newError(http.StatusBadRequest, "BadParameter", "This pool does not make join tokens.")
	}
	var p struct{}
	if err := g.decode(c, &p); err != nil {
		return nil, err
	}
	t, err := g.cluster.CreateJoinToken(c.ctx, &pb.CreateJoinTokenRequest{})
	if err != nil {
		return nil, err
	}
	c.status = http.StatusCreated
	return struct {
		Token   string `json:"token"`
		Expires int64  `json:"expires"`
	}{t.Token, t.Expires}, nil
}

// clusterStatus is the JSON of GET /cluster/status. Nodes is never null.
type clusterStatus struct {
	LeaderID   string       `json:"leaderId"`
	AnsweredBy string       `json:"answeredBy"`
	Nodes      []nodeStatus `json:"nodes"`
}

// nodeStatus is one node of clusterStatus, every field always present (pb.NodeStatus says what
// each means).
type nodeStatus struct {
	NodeID        string `json:"nodeId"`
	RaftAddr      string `json:"raftAddr"`
	NodeAddr      string `json:"nodeAddr"`
	URL           string `json:"url"`
	Suffrage      string `json:"suffrage"`
	Role          string `json:"role"`
	Term          uint64 `json:"term"`
	LastIndex     uint64 `json:"lastIndex"`
	CommitIndex   uint64 `json:"commitIndex"`
	AppliedIndex  uint64 `json:"appliedIndex"`
	Lag           uint64 `json:"lag"`
	LastContactMs int64  `json:"lastContactMs"`
	HSMOk         bool   `json:"hsmOk"`
	HSMError      string `json:"hsmError"`
	Reachable     bool   `json:"reachable"`
	Error         string `json:"error"`
	Version       string `json:"version"`
}

func toClusterStatus(s *pb.ClusterStatus) clusterStatus {
	out := clusterStatus{LeaderID: s.LeaderId, AnsweredBy: s.AnsweredBy, Nodes: make([]nodeStatus, 0, len(s.Nodes))}
	for _, n := range s.Nodes {
		out.Nodes = append(out.Nodes, nodeStatus{NodeID: n.NodeId, RaftAddr: n.RaftAddr, NodeAddr: n.NodeAddr, URL: n.Url,
			Suffrage: n.Suffrage, Role: n.Role, Term: n.Term, LastIndex: n.LastIndex, CommitIndex: n.CommitIndex,
			AppliedIndex: n.AppliedIndex, Lag: n.Lag, LastContactMs: n.LastContactMs, HSMOk: n.HsmOk, HSMError: n.HsmError,
			Reachable: n.Reachable, Error: n.Error, Version: n.Version})
	}
	return out
}

// getClusterStatus is GET /cluster/status: every node of the pool as the node called sees it.
func (g *Gateway) getClusterStatus(c *call) (any, error) {
	if g.cluster == nil {
		return nil, errNoCluster
	}
	s, err := g.cluster.GetStatus(c.ctx, &pb.GetClusterStatusRequest{})
	if err != nil {
		return nil, err
	}
	return toClusterStatus(s), nil
}

// removeNode is DELETE /cluster/nodes/{nodeId}: 204 once the node is out of the pool.
func (g *Gateway) removeNode(c *call) (any, error) {
	if g.cluster == nil {
		return nil, errNoCluster
	}
	if _, err := g.cluster.RemoveNode(c.ctx, &pb.RemoveNodeRequest{NodeId: c.version}); err != nil {
		return nil, err
	}
	c.status = http.StatusNoContent
	return nil, nil
}
