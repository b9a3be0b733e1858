package gateway

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"google.golang.org/grpc"

	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// stubKeys answers Sign and Encrypt at once, so that the benchmarks measure the gateway alone:
// routing, headers, JSON and base64 of the request and the answer.
type stubKeys struct{ pb.KeysClient }

func (stubKeys) Sign(_ context.Context, r *pb.KeyOperationRequest, _ ...grpc.CallOption) (*pb.KeyOperationResult, error) {
	return &pb.KeyOperationResult{Name: r.Name, Version: ver1, Value: make([]byte, 64)}, nil
}

func (stubKeys) Encrypt(_ context.Context, r *pb.KeyOperationRequest, _ ...grpc.CallOption) (*pb.KeyOperationResult, error) {
	return &pb.KeyOperationResult{Name: r.Name, Version: ver1, Value: r.Value, Iv: make([]byte, 12), Tag: make([]byte, 16)}, nil
}

func benchGateway(b *testing.B, target, body string) {
	g, err := New(Config{
		Keys: stubKeys{}, SecurityDomain: struct{ pb.SecurityDomainClient }{}, Pool: struct{ pb.PoolClient }{},
		Challenge: func(string) string { return "Bearer x" }, Resource: testResource,
	})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, target, nil)
	req.Host = testHost
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/json")
	rd := bytes.NewReader([]byte(body))
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset([]byte(body))
		req.Body = readCloser{rd}
		w := httptest.NewRecorder()
		g.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// BenchmarkSign is one ES256 signature through the gateway (the core stubbed out).
func BenchmarkSign(b *testing.B) {
	benchGateway(b, "/keys/load-p256/"+ver1+"/sign"+v, `{"alg":"ES256","value":"47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"}`)
}

// BenchmarkEncrypt4KiB is one A256GCM encryption of 4 KiB through the gateway.
func BenchmarkEncrypt4KiB(b *testing.B) {
	benchGateway(b, "/keys/load-aes256/"+ver1+"/encrypt"+v,
		`{"alg":"A256GCM","value":"`+string(bytes.Repeat([]byte("AAAA"), 4096/3))+`AA"}`)
}
