package core

import (
	"context"
	"time"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/nodejoin"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

type clusterServer struct {
	pb.UnsafeClusterServer
	c *Core
}

// CreateJoinToken makes a single-use join token, valid for nodejoin.TokenValidity, and records
// only its SHA-256. The token's text carries the pool CA's fingerprint, which the joining node
// pins (docs/cluster.md, "Joining").
func (s *clusterServer) CreateJoinToken(ctx context.Context, _ *pb.CreateJoinTokenRequest) (*pb.JoinToken, error) {
	c := s.c
	if c.caFingerprint == nil {
		return nil, rpcerr.New(fault.Unsupported, "Unsupported", "this node has no pool CA certificate (tls.ca_file): nodes cannot join through it")
	}
	tok, err := nodejoin.NewToken(*c.caFingerprint)
	if err != nil {
		return nil, err
	}
	now := c.now()
	expires := now.Add(nodejoin.TokenValidity).Unix()
	if err := c.propose(ctx, now, &pb.Command{Op: &pb.Command_PutJoinToken{PutJoinToken: &pb.PutJoinToken{Hash: tok.Hash(), Expires: expires}}}); err != nil {
		return nil, err
	}
	c.log.Info("join token created", "expires", time.Unix(expires, 0).UTC())
	return &pb.JoinToken{Token: tok.Text(), Expires: expires}, nil
}

// GetStatus reports every node of the pool as this node sees it (docs/cluster.md, "Status").
func (s *clusterServer) GetStatus(ctx context.Context, _ *pb.GetClusterStatusRequest) (*pb.ClusterStatus, error) {
	if s.c.members == nil {
		return nil, rpcerr.New(fault.Unsupported, "Unsupported", "this node reports no cluster status")
	}
	return s.c.members.Status(ctx)
}

// RemoveNode removes a node from the pool through the leader; its certificate is refused from
// then on.
func (s *clusterServer) RemoveNode(ctx context.Context, r *pb.RemoveNodeRequest) (*pb.RemoveNodeResponse, error) {
	if r.NodeId == "" {
		return nil, rpcerr.New(fault.BadParameter, "BadParameter", "node_id is required")
	}
	if s.c.members == nil {
		return nil, rpcerr.New(fault.Unsupported, "Unsupported", "this node is not part of a cluster: there is no node to remove")
	}
	if err := s.c.members.RemoveNode(ctx, r.NodeId); err != nil {
		return nil, err
	}
	s.c.log.Info("node removed", "node", r.NodeId)
	return &pb.RemoveNodeResponse{}, nil
}
