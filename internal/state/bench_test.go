package state

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// benchKeys is the pool size of the benchmarks: twice Azure's published limit of 5,000 keys.
const benchKeys = 10_000

// benchVersion is an RSA-2048 version of realistic size: a 256-byte modulus and a 1,232-byte
// wrapped PKCS#8 blob.
func benchVersion(id string) *pb.KeyVersion {
	v := version(id)
	v.Kty, v.Crv, v.Bits = "RSA-HSM", "", 2048
	v.Public = &pb.PublicKey{N: bytes.Repeat([]byte{0xc5}, 256), E: []byte{1, 0, 1}}
	v.Wrapped = bytes.Repeat([]byte{0x5c}, 1232)
	return v
}

func benchName(i int) string { return fmt.Sprintf("key-%05d", i) }

// benchNames are the names of benchState's keys, made once so that the benchmarks do not
// measure fmt.
var benchNames = func() []string {
	ns := make([]string, benchKeys)
	for i := range ns {
		ns[i] = benchName(i)
	}
	return ns
}()

// benchState returns a state with benchKeys keys of three versions each, and every tenth key
// soft-deleted.
func benchState(b *testing.B) *State {
	b.Helper()
	s := newActive(b)
	for i := range benchKeys {
		for v := range 3 {
			mustApply(b, s, cmdAt(t0, &pb.PutKeyVersion{Name: benchName(i), Version: benchVersion(fmt.Sprint(v))}))
		}
		if i%10 == 9 {
			mustApply(b, s, del(t0, benchName(i)))
		}
	}
	return s
}

// BenchmarkApplyPutKeyVersion adds a new key (a name sorting between existing ones) to a
// state of 10,000 keys: validation, the clone of the version and the sorted-name insert. The
// state is rebuilt from its snapshot (untimed) after every 10,000 keys, so its size stays
// between 10,000 and 20,000.
func BenchmarkApplyPutKeyVersion(b *testing.B) {
	base := snap(b, benchState(b))
	s := New()
	cmds := make([]*pb.Command, benchKeys)
	for i := range cmds {
		cmds[i] = cmdAt(t0, &pb.PutKeyVersion{Name: benchNames[i*7919%benchKeys] + "-new", Version: benchVersion("1")})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i%len(cmds) == 0 {
			b.StopTimer()
			if err := s.RestoreSnapshot(base); err != nil {
				b.Fatal(err)
			}
			runtime.GC() // collect the replaced state now, not in the timed loop
			b.StartTimer()
		}
		if err := s.Apply(uint64(i+1), cmds[i%len(cmds)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyUpdateKeyVersion disables and enables the latest version of existing keys: a
// command that rebuilds one version and the record's version list.
func BenchmarkApplyUpdateKeyVersion(b *testing.B) {
	s := benchState(b)
	cmds := make([]*pb.Command, 2000)
	for i := range cmds {
		cmds[i] = cmdAt(t0, &pb.UpdateKeyVersion{Name: benchNames[i/2*10%benchKeys], Enabled: proto.Bool(i%2 == 0)})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := s.Apply(uint64(i+1), cmds[i%len(cmds)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVersion looks up a named version and the latest version of a key among 10,000.
func BenchmarkVersion(b *testing.B) {
	s := benchState(b)
	for _, tc := range []struct{ name, version string }{{"named", vid("1")}, {"latest", ""}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := range b.N {
				if _, _, err := s.Version(benchNames[i%benchKeys/10*10], tc.version); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("parallel", func(b *testing.B) {
		v1 := vid("1")
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, _, err := s.Version(benchNames[i%benchKeys/10*10], v1); err != nil {
					b.Error(err)
					return
				}
				i += 7
			}
		})
	})
}

// BenchmarkList reads a page of 25 (Azure's maximum) at a position among 10,000 keys.
func BenchmarkList(b *testing.B) {
	s := benchState(b)
	for _, deleted := range []bool{false, true} {
		b.Run(fmt.Sprintf("deleted=%t", deleted), func(b *testing.B) {
			b.ReportAllocs()
			for i := range b.N {
				recs, _ := s.List(deleted, benchNames[i*37%benchKeys], 25)
				if len(recs) == 0 && i*37%benchKeys < benchKeys-300 {
					b.Fatal("empty page")
				}
			}
		})
	}
}

// BenchmarkMarshalSnapshot marshals 10,000 keys of three RSA versions (about 50 MB).
func BenchmarkMarshalSnapshot(b *testing.B) {
	s := benchState(b)
	b.ReportAllocs()
	var n int
	for range b.N {
		out, err := s.MarshalSnapshot()
		if err != nil {
			b.Fatal(err)
		}
		n = len(out)
	}
	b.SetBytes(int64(n))
}
