package cluster_test

import (
	"testing"
)

// BenchmarkApply measures Apply of small commands on a single node whose FSM does
// nothing, with raft.db on disk (fsync per log write): one caller at a time, and many
// at once (batched by Raft).
func BenchmarkApply(b *testing.B) {
	cmd := make([]byte, 128)
	b.Run("serial", func(b *testing.B) {
		n := openLeader(b, testConfig(b), nopFSM{})
		ctx := b.Context()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := n.Apply(ctx, cmd); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	})
	b.Run("parallel", func(b *testing.B) {
		n := openLeader(b, testConfig(b), nopFSM{})
		ctx := b.Context()
		b.ReportAllocs()
		b.SetParallelism(16) // 16 callers per CPU
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := n.Apply(ctx, cmd); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	})
}
