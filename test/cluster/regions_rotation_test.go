package cluster

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cofferhq/coffer/node"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/rotation"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
	"github.com/cofferhq/coffer/test/wait"
)

// TestRotationOfReplicatedSecret: a secret replicated to eu-west-1 is
// rotated in its primary region. The rotation's AWSPENDING version starts
// without a value and gets one from createSecret; the replica ends with the
// rotated value under AWSCURRENT and the old one under AWSPREVIOUS, and the
// replica region never runs the rotation itself (each step ran once).
func TestRotationOfReplicatedSecret(t *testing.T) {
	rs := clustertest.StartRegionsWith(t, 3, []string{usEast, euWest}, clustertest.WithNode(func(o *node.Options) {
		o.AWSAddr = "127.0.0.1:0"
		o.Rotation = rotation.Config{Interval: 50 * time.Millisecond, RetryBase: 100 * time.Millisecond, RetryMax: 500 * time.Millisecond, StepTimeout: time.Minute}
	}))
	rs.Pair(usEast, euWest)
	us, eu := rs.Region(usEast), rs.Region(euWest)
	ctx, cancel := clustertest.RPCContext()
	defer cancel()

	first := "first-password"
	created, err := us.Client(us.Leader()).CreateSecret(ctx, &cofferv1.CreateSecretRequest{
		Name: "app/db", SecretString: &first, ClientRequestToken: newToken(),
		AddReplicaRegions: []*cofferv1.ReplicaRegion{{Region: euWest}},
	})
	if err != nil {
		t.Fatal(describeErr(err))
	}
	arn := created.GetArn()
	waitReplica(t, rs, usEast, euWest, arn)

	l := &lambda{t: t, c: us, secret: []byte("hmac-shared-secret")}
	fnARN := startLambda(t, us, l)
	rot, err := us.Client(us.Leader()).RotateSecret(ctx, &cofferv1.RotateSecretRequest{
		SecretId: arn, RotationLambdaArn: fnARN, ClientRequestToken: newToken(),
		RotationRules: &cofferv1.RotationRules{AutomaticallyAfterDays: new(int64(30))},
	})
	if err != nil {
		t.Fatal(describeErr(err))
	}
	token := rot.GetVersionId()
	// The rotation finishes in the primary region.
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		st := rotationStages(describeSecret(t, us, arn))
		if !slices.Contains(st[token], "AWSCURRENT") || !slices.Contains(st[created.GetVersionId()], "AWSPREVIOUS") {
			return fmt.Errorf("stages in %s: %v", usEast, st)
		}
		return nil
	})
	waitReplica(t, rs, usEast, euWest, arn)

	rotated, err := us.Client(us.Leader()).GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: arn})
	if err != nil {
		t.Fatal(describeErr(err))
	}
	if rotated.GetVersionId() != token || rotated.GetSecretString() == first {
		t.Fatalf("primary AWSCURRENT is version %s, want the rotated %s", rotated.GetVersionId(), token)
	}
	wantValue(t, eu, "app/db", "", rotated.GetSecretString())
	wantValue(t, eu, "app/db", "AWSPREVIOUS", first)
	d, err := describe(t, eu, 0, "app/db")
	if err != nil {
		t.Fatal(describeErr(err))
	}
	if got := rotationStages(d); !slices.Contains(got[token], "AWSCURRENT") || !d.GetRotationEnabled() {
		t.Errorf("replica stages %v, rotation enabled %v; want the rotated version current and rotation shown enabled", got, d.GetRotationEnabled())
	}
	if calls := l.calls(); !slices.Equal(calls, []string{"createSecret", "setSecret", "testSecret", "finishSecret"}) {
		t.Errorf("function calls %v, want each step once (the replica region must not rotate)", calls)
	}
}
