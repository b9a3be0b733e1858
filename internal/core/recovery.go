package core

import (
	"context"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// Security-domain recovery (issue 6). Until it lands, a pool has no recovery mode.

func errNoRecovery() error {
	return rpcerr.New(fault.Unsupported, "BadParameter", "Security-domain recovery is not available on this pool yet.")
}

func (s *sdServer) GetTransferKey(context.Context, *pb.TransferKeyRequest) (*pb.TransferKey, error) {
	return nil, errNoRecovery()
}

func (s *sdServer) Upload(context.Context, *pb.UploadRequest) (*pb.SecurityDomainStatus, error) {
	return nil, errNoRecovery()
}

func (s *sdServer) GetUploadStatus(ctx context.Context, r *pb.SecurityDomainStatusRequest) (*pb.SecurityDomainStatus, error) {
	return s.GetStatus(ctx, r)
}
