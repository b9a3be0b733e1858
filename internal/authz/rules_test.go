package authz

import (
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// services are the core's gRPC services; TestRulesCoverEveryMethod checks that the proto files
// define no others.
var services = []*grpc.ServiceDesc{
	&pb.Keys_ServiceDesc, &pb.SecurityDomain_ServiceDesc, &pb.Pool_ServiceDesc,
	&pb.Access_ServiceDesc, &pb.Principals_ServiceDesc, &pb.Backup_ServiceDesc, &pb.Cluster_ServiceDesc,
}

// TestRulesCoverEveryMethod keeps the rule table complete: a method added to a service fails here
// until it has a rule, and a rule of a removed method fails too.
func TestRulesCoverEveryMethod(t *testing.T) {
	methods := map[string]bool{}
	for _, sd := range services {
		var names []string
		for _, m := range sd.Methods {
			names = append(names, m.MethodName)
		}
		for _, s := range sd.Streams {
			names = append(names, s.StreamName)
		}
		for _, n := range names {
			full := "/" + sd.ServiceName + "/" + n
			methods[full] = true
			n := 0
			for _, r := range rules {
				if r.Method == full {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%s has %d rules, want exactly 1", full, n)
			}
			r, ok := RuleFor(full)
			if !ok || r.Method != full {
				t.Errorf("RuleFor(%q) = %v, %v", full, r, ok)
			}
			if !r.Public() && (!r.Action.Valid() || r.ScopeKind() == "") {
				t.Errorf("%s: rule without an action or a scope", full)
			}
		}
	}
	for _, r := range Rules() {
		if !methods[r.Method] {
			t.Errorf("rule for %s, which no service has", r.Method)
		}
	}
	desc := map[string]bool{}
	for _, sd := range services {
		desc[sd.ServiceName] = true
	}
	for _, fd := range []protoreflect.FileDescriptor{pb.File_hsmpool_v1_keys_proto, pb.File_hsmpool_v1_pool_proto, pb.File_hsmpool_v1_access_proto, pb.File_hsmpool_v1_state_proto, pb.File_hsmpool_v1_cluster_proto} {
		for i := range fd.Services().Len() {
			if s := fd.Services().Get(i); !desc[string(s.FullName())] {
				t.Errorf("service %s of %s is not in the test's list of services", s.FullName(), fd.Path())
			}
		}
	}
	if _, ok := RuleFor("/hsmpool.v1.Keys/Nope"); ok {
		t.Error("RuleFor finds a method that does not exist")
	}
	for _, r := range Rules() {
		if r.Public() != (r.Method == pb.Pool_GetStatus_FullMethodName) {
			t.Errorf("%s: Public() = %v; only Pool.GetStatus is public", r.Method, r.Public())
		}
	}
}

// TestRuleScopeFromRequestTypes builds each method's real request type and checks that the scope
// of a method on a named key comes from its name field, and that every other scope ignores the
// request.
func TestRuleScopeFromRequestTypes(t *testing.T) {
	for _, r := range Rules() {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(strings.Replace(r.Method[1:], "/", ".", 1)))
		if err != nil {
			t.Errorf("%s: %v", r.Method, err)
			continue
		}
		md := d.(protoreflect.MethodDescriptor)
		mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
		if err != nil {
			t.Fatalf("%s: %v", r.Method, err)
		}
		req := mt.New()
		if f := req.Descriptor().Fields().ByName("name"); f != nil && f.Kind() == protoreflect.StringKind {
			req.Set(f, protoreflect.ValueOfString("k1"))
		}
		want := r.ScopeKind()
		if want == "/keys/{name}" {
			want = "/keys/k1"
		}
		if r.Public() {
			want = "/"
		}
		if got := r.Scope(req.Interface()); got != want {
			t.Errorf("%s(%s): scope %q, want %q", md.Name(), md.Input().Name(), got, want)
		}
	}
}

func TestRuleScope(t *testing.T) {
	rule := func(m string) Rule {
		r, ok := RuleFor(m)
		if !ok {
			t.Fatalf("no rule for %s", m)
		}
		return r
	}
	tests := []struct {
		method string
		req    any
		want   string
	}{
		{pb.Keys_Sign_FullMethodName, &pb.KeyOperationRequest{Name: "k1", Version: "v"}, "/keys/k1"},
		{pb.Keys_Verify_FullMethodName, &pb.VerifyRequest{Name: "k1"}, "/keys/k1"},
		{pb.Keys_GetKey_FullMethodName, &pb.KeyRef{Name: "k1"}, "/keys/k1"},
		{pb.Keys_UpdateKey_FullMethodName, &pb.UpdateKeyRequest{Name: "k1"}, "/keys/k1"},
		{pb.Keys_SetRotationPolicy_FullMethodName, &pb.SetRotationPolicyRequest{Name: "k1"}, "/keys/k1"},
		{pb.Keys_CreateKey_FullMethodName, &pb.CreateKeyRequest{Name: "k1"}, "/keys/k1"},
		{pb.Keys_ImportKey_FullMethodName, &pb.ImportKeyRequest{Name: "k1"}, "/keys/k1"},
		{pb.Keys_ListKeyVersions_FullMethodName, &pb.ListRequest{Name: "k1"}, "/keys/k1"},
		{pb.Keys_PurgeDeletedKey_FullMethodName, &pb.KeyRef{Name: "k1"}, "/keys/k1"},
		{pb.Keys_ListKeys_FullMethodName, &pb.ListRequest{Name: "ignored"}, "/keys"},
		{pb.Keys_ListDeletedKeys_FullMethodName, &pb.ListRequest{}, "/keys"},
		{pb.Keys_RestoreKey_FullMethodName, &pb.Blob{}, "/keys"},
		{pb.Keys_GetRandomBytes_FullMethodName, &pb.RandomRequest{Count: 8}, "/keys"},
		{pb.Access_GetRoleDefinition_FullMethodName, &pb.RoleDefinitionRef{Name: "x"}, "/"},
		{pb.Access_ListRoleAssignments_FullMethodName, &pb.ListRoleAssignmentsRequest{Scope: "/keys"}, "/"},
		{pb.SecurityDomain_Download_FullMethodName, &pb.DownloadRequest{}, "/"},
		// Degenerate requests fall back to the scopes fewest assignments reach.
		{pb.Keys_Sign_FullMethodName, &pb.KeyOperationRequest{}, "/keys"},
		{pb.Keys_Sign_FullMethodName, (*pb.KeyOperationRequest)(nil), "/keys"},
		{pb.Keys_Sign_FullMethodName, "not a request", "/"},
		{pb.Keys_Sign_FullMethodName, nil, "/"},
	}
	for _, tc := range tests {
		if got := rule(tc.method).Scope(tc.req); got != tc.want {
			t.Errorf("%s(%T): scope %q, want %q", tc.method, tc.req, got, tc.want)
		}
	}
}
