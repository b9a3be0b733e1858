package state

import (
	"bytes"
	"crypto/sha256"

	"google.golang.org/protobuf/proto"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// maxJoinTokens bounds the join tokens the pool keeps (unexpired or used).
const maxJoinTokens = 64

// putJoinToken records a join token's hash, dropping the unused tokens that have expired at t.
func (s *State) putJoinToken(t int64, op *pb.PutJoinToken) (change, error) {
	if s.pool == nil {
		return change{}, errNotInitialized()
	}
	if len(op.GetHash()) != sha256.Size {
		return change{}, errBadParameter("a join token hash is %d bytes, got %d", sha256.Size, len(op.GetHash()))
	}
	if op.GetExpires() <= t {
		return change{}, errBadParameter("the join token expires at %d, not after the command's time %d", op.GetExpires(), t)
	}
	pool := proto.Clone(s.pool).(*pb.PoolRecord)
	kept := pool.JoinTokens[:0]
	for _, jt := range pool.JoinTokens {
		if bytes.Equal(jt.Hash, op.Hash) {
			return change{}, errConflict("the join token exists")
		}
		if jt.UsedBy != "" || jt.Expires > t {
			kept = append(kept, jt)
		}
	}
	if len(kept) >= maxJoinTokens {
		return change{}, rpcerr.New(fault.Conflict, "Conflict", "the pool holds %d join tokens, the most it keeps", maxJoinTokens)
	}
	pool.JoinTokens = append(kept, &pb.JoinTokenRecord{Hash: bytes.Clone(op.Hash), Expires: op.Expires})
	return s.poolChange(pool), nil
}

// useJoinToken spends a join token for a node. The same node may use it again (its join polls
// until the security officer has trusted its key); another node may not.
func (s *State) useJoinToken(t int64, op *pb.UseJoinToken) (change, error) {
	if s.pool == nil {
		return change{}, errNotInitialized()
	}
	if op.GetNodeId() == "" {
		return change{}, errBadParameter("the node ID is empty")
	}
	pool := proto.Clone(s.pool).(*pb.PoolRecord)
	for _, jt := range pool.JoinTokens {
		if !bytes.Equal(jt.Hash, op.GetHash()) {
			continue
		}
		switch {
		case jt.UsedBy == op.NodeId:
			return change{}, nil
		case jt.UsedBy != "":
			return change{}, rpcerr.New(fault.Forbidden, "Forbidden", "the join token was used by another node")
		case jt.Expires <= t:
			return change{}, rpcerr.New(fault.Forbidden, "Forbidden", "the join token has expired")
		}
		jt.UsedBy = op.NodeId
		return s.poolChange(pool), nil
	}
	return change{}, rpcerr.New(fault.Forbidden, "Forbidden", "the join token is not known to the pool")
}

// JoinTokenUsedBy returns the node that used the join token whose SHA-256 is hash, and whether
// the token exists at all.
func (s *State) JoinTokenUsedBy(hash []byte) (nodeID string, expires int64, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, jt := range s.pool.GetJoinTokens() {
		if bytes.Equal(jt.Hash, hash) {
			return jt.UsedBy, jt.Expires, true
		}
	}
	return "", 0, false
}
