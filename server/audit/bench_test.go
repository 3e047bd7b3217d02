package audit

import (
	"path/filepath"
	"testing"
)

// BenchmarkWrite measures Write from 16×GOMAXPROCS goroutines, with and
// without fsync, and from one goroutine with fsync for comparison. With sync the records
// per fsync show how well group commit batches.
func BenchmarkWrite(b *testing.B) {
	for _, tc := range []struct {
		name   string
		sync   bool
		serial bool // one writer: every record waits for its own fsync
	}{{"sync", true, false}, {"sync-serial", true, true}, {"nosync", false, false}} {
		b.Run(tc.name, func(b *testing.B) {
			var fx faults
			cfg := Config{Path: filepath.Join(b.TempDir(), "audit.log"), Key: testKey, Sync: tc.sync, openFile: fx.open}
			l, err := Open(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			r := record(0)
			r.Params = map[string]string{"SecretString": l.HashValue("value"), "VersionStage": "AWSCURRENT"}
			b.ResetTimer()
			if tc.serial {
				for range b.N {
					if err := l.Write(r); err != nil {
						b.Fatal(err)
					}
				}
			} else {
				b.SetParallelism(16) // many requests in flight, as on a busy node
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := l.Write(r); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			if n := fx.syncs.Load(); n > 0 {
				b.ReportMetric(float64(b.N)/float64(n), "records/fsync")
			}
		})
	}
}
