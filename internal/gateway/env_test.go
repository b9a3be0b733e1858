package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

const (
	testResource  = "https://managedhsm.localhost:8443"
	testChallenge = `Bearer authorization="https://login.localhost/tenant-1", resource="https://managedhsm.localhost:8443"`
	testToken     = "tok-1.secret-part"
	testHost      = "myhsm.managedhsm.localhost:8443"
	ver1          = "0123456789abcdef0123456789abcdef"
	ver2          = "fedcba9876543210fedcba9876543210"
	v             = "?api-version=2025-07-01"
)

// replyFunc answers one gRPC method of the fake core.
type replyFunc func(req proto.Message) (proto.Message, error)

// coreCall is one call the fake core received.
type coreCall struct {
	method string // "Keys/CreateKey"
	req    proto.Message
	md     metadata.MD
}

// fakeCore answers the core's gRPC API from a table of replies, on a real gRPC server. It
// answers every call in an interceptor, so the registered servers are empty shells; a method
// without a reply fails with an internal error.
type fakeCore struct {
	mu      sync.Mutex
	replies map[string]replyFunc
	calls   []coreCall
}

func (f *fakeCore) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, _ grpc.UnaryHandler) (any, error) {
	method := strings.TrimPrefix(info.FullMethod, "/hsmpool.v1.")
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	f.calls = append(f.calls, coreCall{method, proto.Clone(req.(proto.Message)), md})
	reply := f.replies[method]
	f.mu.Unlock()
	if reply == nil {
		return nil, status.Errorf(codes.Internal, "fake core: no reply for %s", method)
	}
	return reply(req.(proto.Message))
}

func (f *fakeCore) on(method string, r replyFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replies[method] = r
}

func (f *fakeCore) reset() []coreCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

type env struct {
	t    *testing.T
	core *fakeCore
	srv  *httptest.Server
	log  *syncBuffer
}

func newEnv(t *testing.T, opts ...func(*Config)) *env {
	t.Helper()
	core := &fakeCore{replies: map[string]replyFunc{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.UnaryInterceptor(core.intercept))
	pb.RegisterKeysServer(gs, struct{ pb.KeysServer }{})
	pb.RegisterSecurityDomainServer(gs, struct{ pb.SecurityDomainServer }{})
	pb.RegisterPoolServer(gs, struct{ pb.PoolServer }{})
	pb.RegisterAccessServer(gs, struct{ pb.AccessServer }{})
	pb.RegisterPrincipalsServer(gs, struct{ pb.PrincipalsServer }{})
	pb.RegisterBackupServer(gs, struct{ pb.BackupServer }{})
	pb.RegisterClusterServer(gs, struct{ pb.ClusterServer }{})
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })

	logs := &syncBuffer{}
	cfg := Config{
		Keys:           pb.NewKeysClient(cc),
		SecurityDomain: pb.NewSecurityDomainClient(cc),
		Pool:           pb.NewPoolClient(cc),
		Access:         pb.NewAccessClient(cc),
		Principals:     pb.NewPrincipalsClient(cc),
		Backup:         pb.NewBackupClient(cc),
		Cluster:        pb.NewClusterClient(cc),
		Identity: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "identity:"+r.URL.Path)
		}),
		OwnsIdentity: func(p string) bool { return strings.HasPrefix(p, "/tenant-1/") },
		Challenge: func(resource string) string {
			return `Bearer authorization="https://login.localhost/tenant-1", resource="` + resource + `"`
		},
		Resource: testResource,
		Logger:   slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, o := range opts {
		o(&cfg)
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(g)
	t.Cleanup(srv.Close)
	return &env{t: t, core: core, srv: srv, log: logs}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// request is one HTTP request of a test; the zero value of each option is the usual case.
type request struct {
	method, target, body string
	host                 string            // default testHost
	auth                 *string           // default "Bearer "+testToken
	header               map[string]string // extra headers
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (e *env) send(r request) *response {
	e.t.Helper()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req, err := http.NewRequest(r.method, e.srv.URL+r.target, body)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Host = testHost
	if r.host != "" {
		req.Host = r.host
	}
	if r.auth == nil {
		req.Header.Set("Authorization", "Bearer "+testToken)
	} else if *r.auth != "" {
		req.Header.Set("Authorization", *r.auth)
	}
	if r.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return &response{status: res.StatusCode, header: res.Header, body: b}
}

func (e *env) do(method, target, body string) *response {
	e.t.Helper()
	return e.send(request{method: method, target: target, body: body})
}

// json decodes the body into a generic value for assertions on shape.
func (r *response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(r.body))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return m
}

// errorOf returns the error envelope's code, message and inner code, failing on any other shape.
func (r *response) errorOf(t *testing.T) (code, msg, inner string) {
	t.Helper()
	var env struct {
		Error *struct {
			Code       string `json:"code"`
			Message    string `json:"message"`
			InnerError *struct {
				Code string `json:"code"`
			} `json:"innererror"`
		} `json:"error"`
	}
	d := json.NewDecoder(bytes.NewReader(r.body))
	d.DisallowUnknownFields()
	if err := d.Decode(&env); err != nil || env.Error == nil {
		t.Fatalf("not an error envelope: %q (%v)", r.body, err)
	}
	if env.Error.InnerError != nil {
		inner = env.Error.InnerError.Code
	}
	return env.Error.Code, env.Error.Message, inner
}

// sampleKey is an EC key version as the core returns it.
func sampleKey(name, version string) *pb.Key {
	enabled, exportable := true, false
	return &pb.Key{
		Name: name, Version: version, Kty: "EC-HSM", KeyOps: []string{"sign", "verify"},
		Public: &pb.PublicKey{Crv: "P-256", X: bytes.Repeat([]byte{0xfb}, 32), Y: bytes.Repeat([]byte{0x01}, 32)},
		Attributes: &pb.KeyAttributes{
			Enabled: &enabled, Created: 1700000000, Updated: 1700000001, RecoverableDays: 7,
			RecoveryLevel: "CustomizedRecoverable+Purgeable", Exportable: &exportable,
		},
	}
}

type named interface{ GetName() string }
type versioned interface{ GetVersion() string }

// keyReply answers with sampleKey of the request's name and version (ver1 when latest).
func keyReply(req proto.Message) (proto.Message, error) {
	var name, version string
	if n, ok := req.(named); ok {
		name = n.GetName()
	}
	if vv, ok := req.(versioned); ok {
		version = vv.GetVersion()
	}
	if version == "" {
		version = ver1
	}
	return sampleKey(name, version), nil
}

// withDefaults gives every method of the core a plausible answer.
func (e *env) withDefaults() *env {
	for _, m := range []string{"CreateKey", "ImportKey", "GetKey", "UpdateKey", "DeleteKey", "GetDeletedKey", "RecoverDeletedKey", "RotateKey"} {
		e.core.on("Keys/"+m, keyReply)
	}
	e.core.on("Keys/RestoreKey", func(proto.Message) (proto.Message, error) { return sampleKey("k1", ver1), nil })
	list := func(proto.Message) (proto.Message, error) {
		return &pb.KeyList{Keys: []*pb.Key{sampleKey("k1", ver1)}}, nil
	}
	for _, m := range []string{"ListKeys", "ListKeyVersions", "ListDeletedKeys"} {
		e.core.on("Keys/"+m, list)
	}
	e.core.on("Keys/PurgeDeletedKey", func(proto.Message) (proto.Message, error) { return &emptypb.Empty{}, nil })
	e.core.on("Keys/BackupKey", func(proto.Message) (proto.Message, error) { return &pb.Blob{Value: []byte{1, 2, 3}}, nil })
	e.core.on("Keys/GetRandomBytes", func(proto.Message) (proto.Message, error) { return &pb.Blob{Value: []byte{9, 9}}, nil })
	e.core.on("Keys/GetRotationPolicy", func(proto.Message) (proto.Message, error) { return &pb.RotationPolicy{}, nil })
	e.core.on("Keys/SetRotationPolicy", func(req proto.Message) (proto.Message, error) {
		return req.(*pb.SetRotationPolicyRequest).Policy, nil
	})
	op := func(req proto.Message) (proto.Message, error) {
		r := req.(*pb.KeyOperationRequest)
		version := r.Version
		if version == "" {
			version = ver1
		}
		return &pb.KeyOperationResult{Name: r.Name, Version: version, Value: []byte("result")}, nil
	}
	for _, m := range []string{"Encrypt", "Decrypt", "WrapKey", "UnwrapKey", "Sign"} {
		e.core.on("Keys/"+m, op)
	}
	e.core.on("Keys/Verify", func(proto.Message) (proto.Message, error) { return &pb.VerifyResult{Value: true}, nil })
	return e
}

func ptr[T any](v T) *T { return &v }
