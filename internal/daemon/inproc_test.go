package daemon

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

type poolStub struct {
	pb.UnsafePoolServer
	got *pb.PoolStatusRequest
}

func (p *poolStub) GetStatus(ctx context.Context, r *pb.PoolStatusRequest) (*pb.PoolStatus, error) {
	p.got = r
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("authorization"); len(v) != 1 || v[0] != "Bearer t" {
		return nil, status.Error(codes.Unauthenticated, "no token")
	}
	return &pb.PoolStatus{Name: "contoso", Keys: 3}, nil
}

func TestInProcess(t *testing.T) {
	var intercepted []string
	conn := newInProcess(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		intercepted = append(intercepted, info.FullMethod)
		if _, ok := req.(*pb.PoolStatusRequest); !ok {
			t.Errorf("interceptor saw %T", req)
		}
		return h(ctx, req)
	})
	stub := &poolStub{}
	pb.RegisterPoolServer(conn, stub)
	client := pb.NewPoolClient(conn)

	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer t")
	req := &pb.PoolStatusRequest{}
	got, err := client.GetStatus(ctx, req)
	if err != nil || got.Name != "contoso" || got.Keys != 3 {
		t.Fatalf("GetStatus = %v, %v", got, err)
	}
	if stub.got != req {
		t.Error("the handler received a copy of the caller's message")
	}
	if err := conn.Invoke(ctx, pb.Pool_GetStatus_FullMethodName, &pb.KeyRef{}, new(pb.PoolStatus)); err == nil || len(intercepted) != 1 {
		t.Errorf("a request of the wrong type: %v, intercepted %v; want an error before the interceptor", err, intercepted)
	}
	if len(intercepted) != 1 || intercepted[0] != pb.Pool_GetStatus_FullMethodName {
		t.Errorf("interceptor saw %v", intercepted)
	}
	if _, err := client.GetStatus(context.Background(), req); status.Code(err) != codes.Unauthenticated {
		t.Errorf("without metadata: %v, want the handler's Unauthenticated", err)
	}
	if _, err := pb.NewKeysClient(conn).GetKey(ctx, &pb.KeyRef{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("unregistered service: %v, want Unimplemented", err)
	}
}
