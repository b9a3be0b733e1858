package state

import (
	"net"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// maxNodes bounds the node map. A pool has 1, 3 or 5 voters; the slack is for nodes being
// replaced.
const maxNodes = 16

// putNode adds or replaces a node's record (docs/cluster.md, "The node map").
func (s *State) putNode(t int64, op *pb.PutNode) (change, error) {
	if s.pool == nil {
		return change{}, errNotInitialized()
	}
	n := op.GetNode()
	if err := checkNodeRecord(n); err != nil {
		return change{}, err
	}
	pool := proto.Clone(s.pool).(*pb.PoolRecord)
	rec := &pb.NodeRecord{NodeId: n.NodeId, NodeAddr: n.NodeAddr, Url: n.Url, AuthorityHost: n.AuthorityHost, Updated: t}
	i, found := slices.BinarySearchFunc(pool.Nodes, n.NodeId, func(r *pb.NodeRecord, id string) int { return strings.Compare(r.NodeId, id) })
	switch {
	case found:
		pool.Nodes[i] = rec
	case len(pool.Nodes) >= maxNodes:
		return change{}, errConflict("the pool knows %d nodes, the most it keeps: remove one first", maxNodes)
	default:
		pool.Nodes = slices.Insert(pool.Nodes, i, rec)
	}
	return s.poolChange(pool), nil
}

// deleteNode drops a node's record; an unknown node is not an error (removal is idempotent).
func (s *State) deleteNode(op *pb.DeleteNode) (change, error) {
	if s.pool == nil {
		return change{}, errNotInitialized()
	}
	pool := proto.Clone(s.pool).(*pb.PoolRecord)
	n := len(pool.Nodes)
	pool.Nodes = slices.DeleteFunc(pool.Nodes, func(r *pb.NodeRecord) bool { return r.NodeId == op.GetNodeId() })
	if len(pool.Nodes) == n {
		return change{}, nil
	}
	return s.poolChange(pool), nil
}

func checkNodeRecord(n *pb.NodeRecord) error {
	if id := n.GetNodeId(); id == "" || len(id) > 128 || strings.ContainsFunc(id, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return errBadParameter("node_id %q: want 1..128 printable ASCII bytes without spaces", n.GetNodeId())
	}
	if host, port, err := net.SplitHostPort(n.GetNodeAddr()); err != nil || host == "" || port == "" {
		return errBadParameter("node_addr %q: want host:port", n.GetNodeAddr())
	}
	if u := n.GetUrl(); u != "" && !strings.HasPrefix(u, "https://") {
		return errBadParameter("url %q: want https://host:port", u)
	}
	if a := n.GetAuthorityHost(); a != "" && (!strings.HasPrefix(a, "https://") || strings.Count(a, "/") != 2) {
		return errBadParameter("authority_host %q: want https://host[:port] with no path", a)
	}
	return nil
}

// Nodes returns the node map: where each node serves, sorted by node ID. The records are
// shared; do not modify them.
func (s *State) Nodes() []*pb.NodeRecord {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.pool.GetNodes())
}

// NodeAddr returns the node API address of node id, or "" when the map has none.
func (s *State) NodeAddr(id string) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, n := range s.pool.GetNodes() {
		if n.NodeId == id {
			return n.NodeAddr
		}
	}
	return ""
}

// checkNodes checks a snapshot's node map, sorting it by ID (sorting again does not trust
// the writer): every record valid, no ID twice.
func checkNodes(pool *pb.PoolRecord) error {
	if pool == nil {
		return nil
	}
	slices.SortFunc(pool.Nodes, func(a, b *pb.NodeRecord) int { return strings.Compare(a.NodeId, b.NodeId) })
	for i, n := range pool.Nodes {
		if err := checkNodeRecord(n); err != nil {
			return err
		}
		if i > 0 && pool.Nodes[i-1].NodeId == n.NodeId {
			return errBadParameter("node %q appears twice in the node map", n.NodeId)
		}
	}
	return nil
}
