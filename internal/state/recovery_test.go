package state

import (
	"bytes"
	"testing"

	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// Recovery mode: a pool made to receive an existing security domain by upload.

func recoveryPool(t int64) *pb.Command {
	return cmdAt(t, &pb.InitPool{Name: "contoso", TenantId: "tenant-1", RecoverableDays: 30, Principals: []*pb.PrincipalRecord{admin()},
		Recovery: true, ExchangeCert: []byte("exchange cert DER"), ExchangeKeyLabel: "hsmpool-exchange-1"})
}

func recovered(t int64) *pb.Command {
	return cmdAt(t, &pb.Activate{
		Recovered: true,
		KekLabel:  "hsmpool-kek-1",
		KekCheck:  &pb.KEKCheck{Blob: []byte("b"), Iv: []byte("iv"), Ciphertext: []byte("ct"), Tag: []byte("tag")},
		BackupKey: []byte("wrapped backup key"),
	})
}

func withRecoveryPool(tb testing.TB) *State {
	tb.Helper()
	s := New()
	mustApply(tb, s, recoveryPool(t0))
	return s
}

func TestApplyInitPoolRecovery(t *testing.T) {
	noCert := recoveryPool(t0)
	noCert.GetInitPool().ExchangeCert = nil
	noLabel := recoveryPool(t0)
	noLabel.GetInitPool().ExchangeKeyLabel = ""
	// Exchange fields without recovery are ignored: only a recovery pool publishes them.
	stray := initPool(t0)
	stray.GetInitPool().ExchangeCert = []byte("x")
	needs := badParameter("a recovery pool needs its exchange certificate and the label of its exchange key")
	runApplyCases(t, []applyCase{
		{
			name: "ok", from: func(testing.TB) *State { return New() }, cmd: recoveryPool(t0),
			check: func(t *testing.T, s *State) {
				p := s.Pool()
				if !p.Recovery || !bytes.Equal(p.ExchangeCert, []byte("exchange cert DER")) || p.ExchangeKeyLabel != "hsmpool-exchange-1" || p.Activated {
					t.Errorf("Pool() = %v", p)
				}
			},
		},
		{
			name: "exchange fields without recovery", from: func(testing.TB) *State { return New() }, cmd: stray,
			check: func(t *testing.T, s *State) {
				if p := s.Pool(); p.Recovery || p.ExchangeCert != nil {
					t.Errorf("Pool() = %v", p)
				}
			},
		},
		{name: "no certificate", from: func(testing.TB) *State { return New() }, cmd: noCert, want: needs},
		{name: "no label", from: func(testing.TB) *State { return New() }, cmd: noLabel, want: needs},
	})
}

func TestApplyActivateRecovery(t *testing.T) {
	runApplyCases(t, []applyCase{
		{
			name: "upload on a recovery pool", from: withRecoveryPool, cmd: recovered(t0 + 3),
			check: func(t *testing.T, s *State) {
				p := s.Pool()
				if !p.Activated || !p.Recovered || !p.Recovery || p.ActivatedAt != t0+3 || p.KekLabel != "hsmpool-kek-1" ||
					!bytes.Equal(p.BackupKey, []byte("wrapped backup key")) || len(p.OfficerCerts) != 0 || p.SecurityDomain != nil {
					t.Errorf("Pool() = %v", p)
				}
				if _, ok := s.PrincipalByClientID(admin().ClientId); !ok {
					t.Error("activation lost the principal index")
				}
			},
		},
		{name: "download on a recovery pool", from: withRecoveryPool, cmd: activate(t0),
			want: conflict("the pool is in recovery mode: it is activated by uploading a restore blob, not by a download")},
		{name: "upload on a normal pool", from: withPool, cmd: recovered(t0),
			want: conflict("the pool is not in recovery mode: it is activated by downloading its security domain, not by an upload")},
		{name: "upload twice", from: withRecoveryPool, setup: []*pb.Command{recovered(t0 + 1)}, cmd: recovered(t0 + 2),
			want: conflict("the pool is already activated")},
		{name: "key after recovery", from: withRecoveryPool, setup: []*pb.Command{recovered(t0 + 1)}, cmd: put(t0+2, "k1", "1")},
		{name: "key before recovery", from: withRecoveryPool, cmd: put(t0+2, "k1", "1"), want: notActivated},
	})
}
