package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
	"github.com/hsmpool/hsmpool/internal/state"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

const t0 = 1767225600

func initPool() *pb.Command {
	return &pb.Command{Id: "init", Time: t0, Op: &pb.Command_InitPool{InitPool: &pb.InitPool{
		Name: "contoso", TenantId: "tenant", RecoverableDays: 7,
		Principals: []*pb.PrincipalRecord{{ObjectId: "obj-1", ClientId: "client-1", Administrator: true}},
	}}}
}

func activate() *pb.Command {
	return &pb.Command{Id: "activate", Time: t0, Op: &pb.Command_Activate{Activate: &pb.Activate{
		SecurityDomain: []byte("sd"), Quorum: 2, BackupKey: []byte("bk"),
	}}}
}

func put(name, version string) *pb.Command {
	return &pb.Command{Id: "put-" + name + "-" + version, Time: t0, Op: &pb.Command_PutKeyVersion{PutKeyVersion: &pb.PutKeyVersion{
		Name: name,
		Version: &pb.KeyVersion{
			Version: fmt.Sprintf("%032s", version), Kty: "oct-HSM", Bits: 256, Wrapped: bytes.Repeat([]byte{1}, 40),
			Tags: map[string]string{"a": "1", "b": "2", "c": "3", "d": "4", "e": "5", "f": "6"},
		},
	}}}
}

func del(name string) *pb.Command {
	return &pb.Command{Id: "del-" + name, Time: t0 + 1, Op: &pb.Command_DeleteKey{DeleteKey: &pb.DeleteKey{Name: name}}}
}

func encode(tb testing.TB, c *pb.Command) []byte {
	tb.Helper()
	b, err := Encode(c)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func commandLog(tb testing.TB, idx uint64, c *pb.Command) *raft.Log {
	return &raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: encode(tb, c)}
}

func snap(tb testing.TB, s *state.State) []byte {
	tb.Helper()
	b, err := s.MarshalSnapshot()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// logBuffer returns a logger that writes text into the returned buffer.
func logBuffer() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), &buf
}

func TestApply(t *testing.T) {
	tests := []struct {
		name      string
		log       *raft.Log
		wantErr   *rpcerr.Error // nil: the response must be exactly nil
		wantIndex uint64        // state.Index() afterwards
		wantLog   string        // in the log output
	}{
		{name: "success", log: commandLog(t, 5, put("k", "2")), wantIndex: 5},
		{
			name: "refused", log: commandLog(t, 6, put("k", "1")), wantIndex: 6,
			wantErr: &rpcerr.Error{Kind: fault.Conflict, Code: "Conflict", Msg: "key k already has version " + fmt.Sprintf("%032s", "1")},
			wantLog: "raft command refused",
		},
		{
			name: "not protobuf", log: &raft.Log{Index: 7, Type: raft.LogCommand, Data: []byte{0xff, 0xff}}, wantIndex: 7,
			wantErr: &rpcerr.Error{Kind: fault.Internal, Msg: "the replicated command could not be decoded"},
			wantLog: "raft log entry is not a command",
		},
		{
			name: "empty command", log: &raft.Log{Index: 8, Type: raft.LogCommand}, wantIndex: 8,
			wantErr: &rpcerr.Error{Kind: fault.BadParameter, Code: "BadParameter", Msg: "the command has no operation this node knows"},
		},
		{
			name: "unknown operation", wantIndex: 9,
			// Field 99 of Command: an operation of a newer version.
			log:     &raft.Log{Index: 9, Type: raft.LogCommand, Data: []byte{0x9a, 0x06, 0x00}},
			wantErr: &rpcerr.Error{Kind: fault.BadParameter, Code: "BadParameter", Msg: "the command has no operation this node knows"},
			wantLog: "raft command has fields this node does not know",
		},
		{name: "configuration entry skipped", log: &raft.Log{Index: 10, Type: raft.LogConfiguration, Data: []byte{1}}, wantIndex: 4},
		{name: "noop skipped", log: &raft.Log{Index: 11, Type: raft.LogNoop}, wantIndex: 4},
		{name: "barrier skipped", log: &raft.Log{Index: 12, Type: raft.LogBarrier}, wantIndex: 4},
		{name: "nil log skipped", log: nil, wantIndex: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := state.New()
			logger, buf := logBuffer()
			f := New(s, logger)
			for i, c := range []*pb.Command{initPool(), activate(), put("k", "1")} {
				if resp := f.Apply(commandLog(t, uint64(i+2), c)); resp != nil {
					t.Fatalf("setup: %v", resp)
				}
			}
			resp := f.Apply(tt.log)
			if tt.wantErr == nil {
				if resp != nil {
					t.Fatalf("response %#v, want nil", resp)
				}
			} else {
				got, ok := resp.(*rpcerr.Error)
				if !ok {
					t.Fatalf("response %T %v, want *rpcerr.Error", resp, resp)
				}
				if got.Kind != tt.wantErr.Kind || got.Code != tt.wantErr.Code || got.Msg != tt.wantErr.Msg {
					t.Errorf("response %+v, want %+v", got, tt.wantErr)
				}
			}
			if got := s.Index(); got != tt.wantIndex {
				t.Errorf("Index() = %d, want %d", got, tt.wantIndex)
			}
			if !strings.Contains(buf.String(), tt.wantLog) {
				t.Errorf("log %q does not contain %q", buf.String(), tt.wantLog)
			}
		})
	}
}

// TestApplyResponseIsUntypedNil guards against returning a nil *rpcerr.Error as a non-nil any,
// which cluster.Node.Apply would report as an error.
func TestApplyResponseIsUntypedNil(t *testing.T) {
	f := New(state.New(), nil)
	resp := f.Apply(commandLog(t, 1, initPool()))
	if _, isErr := resp.(error); isErr || resp != nil {
		t.Fatalf("response %#v, want untyped nil", resp)
	}
}

func TestApplyBatch(t *testing.T) {
	s := state.New()
	f := New(s, nil)
	logs := []*raft.Log{
		commandLog(t, 1, initPool()),
		{Index: 2, Type: raft.LogConfiguration},
		commandLog(t, 3, activate()),
		commandLog(t, 4, activate()),
		commandLog(t, 5, put("k", "1")),
		{Index: 6, Type: raft.LogCommand, Data: []byte{0xff}},
		commandLog(t, 7, del("k")),
	}
	resps := f.ApplyBatch(logs)
	if len(resps) != len(logs) {
		t.Fatalf("%d responses for %d logs", len(resps), len(logs))
	}
	wantErr := []bool{false, false, false, true, false, true, false}
	for i, r := range resps {
		if (r != nil) != wantErr[i] {
			t.Errorf("response %d = %v, want error %t", i, r, wantErr[i])
		}
	}
	if _, err := s.DeletedKey("k"); err != nil || s.Index() != 7 {
		t.Errorf("after the batch: %v, index %d", err, s.Index())
	}
	if resps := f.ApplyBatch(nil); len(resps) != 0 {
		t.Errorf("ApplyBatch(nil) = %v", resps)
	}
}

func TestEncode(t *testing.T) {
	if _, err := Encode(nil); !errors.Is(err, fault.BadParameter) {
		t.Errorf("Encode(nil) = %v, want fault.BadParameter", err)
	}
	c := put("k", "1")
	first := encode(t, c)
	for range 20 { // map order changes between runs; the bytes must not
		if !bytes.Equal(encode(t, c), first) {
			t.Fatal("Encode is not deterministic")
		}
	}
	var got pb.Command
	if err := proto.Unmarshal(first, &got); err != nil || !proto.Equal(&got, c) {
		t.Errorf("decoded %v, %v; want %v", &got, err, c)
	}
}

// sink is a raft.SnapshotSink in memory that can fail.
type sink struct {
	bytes.Buffer
	writeErr, closeErr error
	closed, canceled   int
}

func (s *sink) Write(p []byte) (int, error) {
	if s.writeErr != nil {
		return 0, s.writeErr
	}
	return s.Buffer.Write(p)
}
func (s *sink) Close() error  { s.closed++; return s.closeErr }
func (s *sink) Cancel() error { s.canceled++; return nil }
func (s *sink) ID() string    { return "test" }

func TestSnapshotPersist(t *testing.T) {
	s := state.New()
	f := New(s, nil)
	for i, c := range []*pb.Command{initPool(), activate(), put("k", "1")} {
		f.Apply(commandLog(t, uint64(i+1), c))
	}
	want := snap(t, s)

	snapshot, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snapshot.Release()
	// Later commands do not change a snapshot already taken.
	f.Apply(commandLog(t, 4, put("k", "2")))

	var ok sink
	if err := snapshot.Persist(&ok); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ok.Bytes(), want) || ok.closed != 1 || ok.canceled != 0 {
		t.Errorf("persisted %d bytes (want %d), closed %d, canceled %d", ok.Len(), len(want), ok.closed, ok.canceled)
	}

	boom := errors.New("disk full")
	failing := sink{writeErr: boom}
	if err := snapshot.Persist(&failing); !errors.Is(err, boom) {
		t.Errorf("Persist = %v, want %v", err, boom)
	}
	if failing.canceled != 1 || failing.closed != 0 {
		t.Errorf("after a failed write: closed %d, canceled %d; want Cancel only", failing.closed, failing.canceled)
	}

	closing := sink{closeErr: boom}
	if err := snapshot.Persist(&closing); !errors.Is(err, boom) {
		t.Errorf("Persist = %v, want %v", err, boom)
	}
}

// readCloser records whether it was closed.
type readCloser struct {
	io.Reader
	closed bool
}

func (r *readCloser) Close() error { r.closed = true; return nil }

func TestRestore(t *testing.T) {
	src := state.New()
	srcFSM := New(src, nil)
	for i, c := range []*pb.Command{initPool(), activate(), put("k", "1"), put("j", "1"), del("j")} {
		srcFSM.Apply(commandLog(t, uint64(i+1), c))
	}
	good := snap(t, src)

	t.Run("ok", func(t *testing.T) {
		s := state.New()
		logger, buf := logBuffer()
		rc := &readCloser{Reader: bytes.NewReader(good)}
		if err := New(s, logger).Restore(rc); err != nil {
			t.Fatal(err)
		}
		if !rc.closed {
			t.Error("Restore did not close its reader")
		}
		if !bytes.Equal(snap(t, s), good) {
			t.Error("the restored state differs")
		}
		if !strings.Contains(buf.String(), "live_keys=1 deleted_keys=1") {
			t.Errorf("log %q", buf.String())
		}
	})

	refused := []struct {
		name string
		r    io.Reader
		want error
	}{
		{"garbage", strings.NewReader("\xff\xff\xff"), fault.Internal},
		{"read error", io.MultiReader(bytes.NewReader(good[:10]), iotestErrReader{}), errRead},
		{"too large", bytes.NewReader(append(bytes.Clone(good), make([]byte, 100)...)), fault.Internal},
	}
	old := snapshotLimit
	snapshotLimit = int64(len(good) + 50)
	t.Cleanup(func() { snapshotLimit = old })
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			s := state.New()
			f := New(s, nil)
			f.Apply(commandLog(t, 1, initPool()))
			before := snap(t, s)
			rc := &readCloser{Reader: tt.r}
			if err := f.Restore(rc); !errors.Is(err, tt.want) {
				t.Fatalf("Restore = %v, want %v", err, tt.want)
			}
			if !rc.closed {
				t.Error("Restore did not close its reader")
			}
			if !bytes.Equal(snap(t, s), before) {
				t.Error("a refused snapshot changed the state")
			}
		})
	}
}

var errRead = errors.New("read failed")

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errRead }

func TestNewNilLogger(t *testing.T) {
	f := New(state.New(), nil)
	// Logging through the default must not panic.
	f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: []byte{0xff}})
}

// FuzzApply feeds the FSM arbitrary log entries: it must never panic, must answer nil or an
// *rpcerr.Error, must count the entry as applied, and must leave a state that still
// snapshots and restores to the same bytes.
func FuzzApply(f *testing.F) {
	for _, c := range []*pb.Command{
		initPool(), activate(), put("k", "2"), put("new", "1"), del("k"), del("gone"),
		{Time: t0, Op: &pb.Command_RecoverKey{RecoverKey: &pb.RecoverKey{Name: "gone"}}},
		{Time: t0, Op: &pb.Command_PurgeKey{PurgeKey: &pb.PurgeKey{Name: "gone"}}},
		{Time: t0, Op: &pb.Command_RestoreKey{RestoreKey: &pb.RestoreKey{Key: &pb.KeyRecord{Name: "r", Versions: []*pb.KeyVersion{{Version: "v"}}}}}},
		{Time: t0, Op: &pb.Command_UpdateKeyVersion{UpdateKeyVersion: &pb.UpdateKeyVersion{Name: "k", Enabled: proto.Bool(false), Tags: &pb.Tags{}}}},
		{Time: t0, Op: &pb.Command_SetRotationPolicy{SetRotationPolicy: &pb.SetRotationPolicy{Name: "k", Policy: &pb.RotationPolicy{ExpiryTime: "P1Y"}}}},
		{Time: t0, Op: &pb.Command_PutPrincipal{PutPrincipal: &pb.PutPrincipal{Principal: &pb.PrincipalRecord{
			ObjectId: "6f1d7c1e-93a4-4a8e-8f55-3e2b1b6c0a11", ClientId: "0b6b1a4e-6d0c-4a55-9b1b-8f0e2c3d4e5f", DisplayName: "app"}}}},
		{Time: t0, Op: &pb.Command_PutRoleAssignment{PutRoleAssignment: &pb.PutRoleAssignment{Assignment: &pb.RoleAssignment{
			Name: "2a7e4c1d-5b6f-4a8e-9c0d-1e2f3a4b5c6d", Scope: "/keys/k", PrincipalId: "6f1d7c1e-93a4-4a8e-8f55-3e2b1b6c0a11",
			RoleDefinitionId: "21dbd100-6940-42c2-9190-5d6cb909625b"}}}},
		{Time: t0, Op: &pb.Command_PutRoleDefinition{PutRoleDefinition: &pb.PutRoleDefinition{Definition: &pb.RoleDefinition{
			Name: "3b8f5d2e-6c7a-4b9f-8d1e-2f3a4b5c6d7e", RoleName: "signer",
			Permissions: []*pb.Permission{{DataActions: []string{"Microsoft.KeyVault/managedHsm/keys/sign/action"}}}}}}},
		{Time: t0, Op: &pb.Command_DeletePrincipal{DeletePrincipal: &pb.DeletePrincipal{ObjectId: "6f1d7c1e-93a4-4a8e-8f55-3e2b1b6c0a11"}}},
	} {
		f.Add(encode(f, c))
	}
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		s := state.New()
		fsm := New(s, nil)
		for i, c := range []*pb.Command{initPool(), activate(), put("k", "1"), put("gone", "1"), del("gone")} {
			if resp := fsm.Apply(commandLog(t, uint64(i+1), c)); resp != nil {
				t.Fatalf("setup: %v", resp)
			}
		}
		resp := fsm.Apply(&raft.Log{Index: 10, Type: raft.LogCommand, Data: data})
		if resp != nil {
			if _, ok := resp.(*rpcerr.Error); !ok {
				t.Fatalf("response %T %v", resp, resp)
			}
		}
		if s.Index() != 10 {
			t.Fatalf("Index() = %d, want 10", s.Index())
		}
		b := snap(t, s)
		r := state.New()
		if err := r.RestoreSnapshot(b); err != nil {
			t.Fatalf("the state after the command does not restore: %v", err)
		}
		if !bytes.Equal(snap(t, r), b) {
			t.Fatal("the state after the command does not round-trip")
		}
	})
}
