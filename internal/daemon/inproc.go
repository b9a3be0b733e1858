package daemon

import (
	"context"
	"fmt"
	"reflect"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// inProcess is the gateway's connection to the core in the same process: a
// grpc.ClientConnInterface that runs the registered services' handlers behind the same unary
// interceptor a grpc.Server would, with the caller's outgoing metadata as incoming metadata.
// It skips only the transport: the protobuf round trip, the socket and four goroutine
// hand-offs cost about 14 % of the daemon's CPU per P-256 signature (docs/benchmarks.md).
//
// The handler gets the caller's request itself: the gateway builds each request for one call
// and the core only reads requests, so a copy bought nothing, and cost a stack growth of the
// request's goroutine on most calls (proto.Merge is deep). Replies are copied (proto.Merge)
// into the caller's, as the generated clients need.
type inProcess struct {
	methods     map[string]inMethod // by full method name, /pkg.Service/Method
	interceptor grpc.UnaryServerInterceptor
}

type inMethod struct {
	impl    any
	handler grpc.MethodHandler
}

func newInProcess(interceptor grpc.UnaryServerInterceptor) *inProcess {
	return &inProcess{methods: map[string]inMethod{}, interceptor: interceptor}
}

// RegisterService makes inProcess a grpc.ServiceRegistrar, so the core registers on it as on a
// grpc.Server.
func (c *inProcess) RegisterService(desc *grpc.ServiceDesc, impl any) {
	for _, m := range desc.Methods {
		c.methods["/"+desc.ServiceName+"/"+m.MethodName] = inMethod{impl: impl, handler: m.Handler}
	}
}

func (c *inProcess) Invoke(ctx context.Context, method string, args, reply any, _ ...grpc.CallOption) error {
	m, ok := c.methods[method]
	if !ok {
		return status.Errorf(codes.Unimplemented, "unknown method %s", method)
	}
	in, ok1 := args.(proto.Message)
	out, ok2 := reply.(proto.Message)
	if !ok1 || !ok2 {
		return status.Errorf(codes.Internal, "%s: messages are not protobuf", method)
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	ctx = metadata.NewIncomingContext(ctx, md)
	// The generated handler decodes into a new message and passes it to the interceptor; dec
	// leaves that one empty, after checking it is of the request's type, and the interceptor
	// is given the request instead. The handler hands on whatever the interceptor passes.
	dec := func(v any) error {
		if reflect.TypeOf(v) != reflect.TypeOf(args) {
			return fmt.Errorf("%s: request is a %T, want a %T", method, args, v)
		}
		return nil
	}
	intercept := func(ctx context.Context, _ any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if c.interceptor == nil {
			return h(ctx, in)
		}
		return c.interceptor(ctx, in, info, h)
	}
	res, err := m.handler(m.impl, ctx, dec, intercept)
	if err != nil {
		return err
	}
	if msg, ok := res.(proto.Message); ok {
		proto.Merge(out, msg)
	}
	return nil
}

func (c *inProcess) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, status.Error(codes.Unimplemented, "the core has no streaming methods")
}
