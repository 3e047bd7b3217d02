package e2e

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/test/wait"
)

// testConcurrencyAndAccess: racing writers, and the last-accessed date a
// read leaves.
func testConcurrencyAndAccess(t *testing.T, sm cofferv1.SecretsManagerServiceClient) {
	t.Run("concurrent writers", func(t *testing.T) {
		ctx := t.Context()
		const writers = 12
		run := func(call func(i int) error) []error {
			errs := make([]error, writers)
			var wg sync.WaitGroup
			for i := range writers {
				wg.Go(func() { errs[i] = call(i) })
			}
			wg.Wait()
			return errs
		}

		tokens := func() []string {
			toks := make([]string, writers)
			for i := range toks {
				toks[i] = newToken(t)
			}
			return toks
		}
		toks := tokens()

		// Racing creates of one name with different tokens: one wins.
		name := "e2e/life/race-create"
		errs := run(func(i int) error {
			_, err := sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: name, ClientRequestToken: toks[i], SecretString: ptr(fmt.Sprint("racer ", i))})
			return err
		})
		won := 0
		for _, err := range errs {
			if err == nil {
				won++
			} else {
				wantType(t, err, "ResourceExistsException")
			}
		}
		if won != 1 {
			t.Errorf("%d of %d racing CreateSecret calls succeeded, want exactly 1", won, writers)
		}

		// Racing retries of one create (same token, same value) all get the
		// same answer, and make one secret with one version.
		name, tok := "e2e/life/race-retry", newToken(t)
		answers := make([]*cofferv1.CreateSecretResponse, writers)
		errs = run(func(i int) error {
			var err error
			answers[i], err = sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: name, ClientRequestToken: tok, SecretString: ptr("same")})
			return err
		})
		for i, err := range errs {
			if err != nil {
				t.Errorf("retry %d of an idempotent CreateSecret: %v", i, err)
			} else if !proto.Equal(answers[i], answers[0]) {
				t.Errorf("retry %d answered %v, retry 0 %v", i, answers[i], answers[0])
			}
		}
		wantStages(t, sm, name, map[string][]string{tok: {"AWSCURRENT"}})
		wantValue(t, sm, &cofferv1.GetSecretValueRequest{SecretId: answers[0].GetArn()}, tok, "same")

		// Racing puts with different tokens each add a version; the labels
		// end up on two of them.
		name = "e2e/life/race-put"
		first := must(sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: name, ClientRequestToken: newToken(t), SecretString: ptr("v0")}))(t)
		toks = tokens()
		errs = run(func(i int) error {
			_, err := sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: name, ClientRequestToken: toks[i], SecretString: ptr(fmt.Sprint("v", i+1))})
			return err
		})
		for i, err := range errs {
			if err != nil {
				t.Errorf("racing PutSecretValue %d: %v", i, err)
			}
		}
		all := must(sm.ListSecretVersionIds(ctx, &cofferv1.ListSecretVersionIdsRequest{SecretId: name, IncludeDeprecated: true}))(t)
		var got []string
		for _, v := range all.GetVersions() {
			got = append(got, v.GetVersionId())
		}
		want := append(slices.Clone(toks), first.GetVersionId())
		if slices.Sort(got); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
			t.Errorf("versions after racing puts = %v, want %v", got, want)
		}
		stages := stagesOf(t, sm, name)
		labels := map[string]int{}
		for _, ss := range stages {
			for _, s := range ss {
				labels[s]++
			}
		}
		if len(stages) != 2 || labels["AWSCURRENT"] != 1 || labels["AWSPREVIOUS"] != 1 {
			t.Errorf("labels after racing puts = %v, want AWSCURRENT and AWSPREVIOUS on two versions", stages)
		}
	})

	t.Run("LastAccessedDate", func(t *testing.T) {
		ctx := t.Context()
		name := "e2e/life/accessed"
		created := must(sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: name, ClientRequestToken: newToken(t), SecretString: ptr("read me")}))(t)
		if d := must(sm.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: name}))(t); d.GetLastAccessedDate() != nil {
			t.Errorf("LastAccessedDate %v before any read", d.GetLastAccessedDate())
		}
		dayBefore := utcMidnight(time.Now())
		wantValue(t, sm, &cofferv1.GetSecretValueRequest{SecretId: name}, created.GetVersionId(), "read me")
		wait.Until(t, 30*time.Second, func() error {
			d, err := sm.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: name})
			if err != nil {
				return err
			}
			got := d.GetLastAccessedDate()
			if got == nil {
				return fmt.Errorf("no LastAccessedDate yet")
			}
			if day := got.AsTime(); !day.Equal(dayBefore) && !day.Equal(utcMidnight(time.Now())) {
				return fmt.Errorf("LastAccessedDate %v, want today's UTC midnight %v", day, dayBefore)
			}
			return nil
		})
		versions := must(sm.ListSecretVersionIds(ctx, &cofferv1.ListSecretVersionIdsRequest{SecretId: name}))(t)
		if len(versions.GetVersions()) != 1 || versions.GetVersions()[0].GetLastAccessedDate() == nil {
			t.Errorf("version list %v: want the read version with a LastAccessedDate", versions.GetVersions())
		}
	})
}
