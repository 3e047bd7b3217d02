package storage

import (
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
)

// benchPut adds version i. Writes are 15 minutes apart so that, with 100
// secrets, each secret's oldest unlabeled version is past the 24-hour
// retention by the time the 100-version limit is reached.
func benchPut(arn string, i int) *raftv1.Command {
	fp := sha256.Sum256(fmt.Appendf(nil, "v%d", i))
	return &raftv1.Command{
		Header: &raftv1.Header{Time: timestamppb.New(time.Unix(1_800_000_000, 0).Add(time.Duration(i) * 15 * time.Minute))},
		Op: &raftv1.Command_PutSecretValue{PutSecretValue: &raftv1.PutSecretValue{
			Arn: arn,
			Version: &raftv1.NewVersion{VersionId: fmt.Sprintf("%036d", i), Value: &storagev1.SealedValue{
				Kind: storagev1.ValueKind_VALUE_KIND_STRING, KmsKeyId: "k", Ciphertext: make([]byte, 300), Fingerprint: fp[:],
			}},
		}},
	}
}

func benchStore(b *testing.B, secrets int) (*Store, []string) {
	b.Helper()
	s, err := Open(filepath.Join(b.TempDir(), "state.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	arns := make([]string, secrets)
	for i := range arns {
		name := fmt.Sprintf("bench/%04d", i)
		arns[i] = SecretARN("aws", "us-east-1", "123456789012", name, "AbCdEf")
		res := s.Apply(uint64(i+1), &raftv1.Command{
			Header: &raftv1.Header{Time: timestamppb.New(time.Unix(1_800_000_000, 0))},
			Op:     &raftv1.Command_CreateSecret{CreateSecret: &raftv1.CreateSecret{Name: name, Arn: arns[i]}},
		})
		if res.Err != nil {
			b.Fatal(res.Err)
		}
	}
	return s, arns
}

// BenchmarkApply is one PutSecretValue per bbolt transaction (one fsync each).
func BenchmarkApply(b *testing.B) {
	s, arns := benchStore(b, 100)
	next := uint64(len(arns)) + 1
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if res := s.Apply(next, benchPut(arns[i%len(arns)], i)); res.Err != nil {
			b.Fatal(res.Err)
		}
		next++
	}
}

// BenchmarkApplyBatch64 is what BatchingFSM does under load: 64 commands per
// transaction. Reported per command.
func BenchmarkApplyBatch64(b *testing.B) {
	s, arns := benchStore(b, 100)
	next := uint64(len(arns)) + 1
	const batch = 64
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		entries := make([]Entry, 0, batch)
		for j := 0; j < batch; j++ {
			entries = append(entries, Entry{Index: next, Cmd: benchPut(arns[(i+j)%len(arns)], i+j)})
			next++
		}
		for _, r := range s.ApplyBatch(entries) {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
		}
	}
}

// BenchmarkListSecretsPage is one ListSecrets page of 100 (the second, by
// its NextToken) among 20,000 secrets, in the default order, with and
// without a filter that matches one secret in ten: the work of a page
// follows the page, not the number of secrets.
func BenchmarkListSecretsPage(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "state.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	const secrets, batch = 20000, 1000
	for i := 0; i < secrets; i += batch {
		entries := make([]Entry, batch)
		for j := range entries {
			n := i + j
			name := fmt.Sprintf("bench/%d/%05d", n%10, n)
			entries[j] = Entry{Index: uint64(n + 1), Cmd: &raftv1.Command{
				Header: &raftv1.Header{Time: timestamppb.New(time.Unix(1_800_000_000, 0).Add(time.Duration(n) * time.Second))},
				Op:     &raftv1.Command_CreateSecret{CreateSecret: &raftv1.CreateSecret{Name: name, Arn: SecretARN("aws", "us-east-1", "123456789012", name, "AbCdEf")}},
			}}
		}
		for _, r := range s.ApplyBatch(entries) {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
		}
	}
	for _, bc := range []struct {
		name    string
		filters []Filter
	}{
		{"all", nil},
		{"one-in-ten", []Filter{{Key: FilterName, Values: []string{"bench/3/"}}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			first, err := s.ListSecrets(Query{Filters: bc.filters})
			if err != nil || first.NextToken == "" {
				b.Fatalf("first page: %v", err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				page, err := s.ListSecrets(Query{Filters: bc.filters, NextToken: first.NextToken})
				if err != nil || len(page.Secrets) != 100 {
					b.Fatalf("page: %d secrets, %v", len(page.Secrets), err)
				}
			}
		})
	}
}
