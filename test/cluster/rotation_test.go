package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/cofferhq/coffer/node"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/rotation"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
	"github.com/cofferhq/coffer/test/wait"
)

// rotationCluster starts a 3-node region whose nodes serve the AWS API and
// retry failed rotations quickly.
func rotationCluster(t *testing.T) *clustertest.Cluster {
	return clustertest.Start(t, 3, clustertest.WithNode(func(o *node.Options) {
		o.AWSAddr = "127.0.0.1:0"
		o.Rotation = rotation.Config{Interval: 50 * time.Millisecond, RetryBase: 100 * time.Millisecond, RetryMax: 500 * time.Millisecond, StepTimeout: time.Minute}
	}))
}

// lambda is a rotation function written as an AWS rotation Lambda is: an
// HTTP handler that takes the rotation event and calls back into the
// Secrets Manager API with aws-sdk-go-v2, through the AWS endpoint of a
// running node. It follows the AWS rotation template step for step.
type lambda struct {
	t      *testing.T
	c      *clustertest.Cluster
	secret []byte

	mu       sync.Mutex
	failSet  bool          // setSecret answers 500 while true
	holdTest chan struct{} // testSecret waits for it to close, when set
	reached  chan struct{} // closed when testSecret is first held
	steps    []string
	took     map[string][]time.Duration // by step: how long each call took, callbacks included
}

// report logs how long each step took, for the figures in the notes.
func (l *lambda) report(t *testing.T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, step := range []string{"createSecret", "setSecret", "testSecret", "finishSecret"} {
		d := l.took[step]
		if len(d) == 0 {
			continue
		}
		var sum time.Duration
		for _, x := range d {
			sum += x
		}
		t.Logf("%s: %d calls, mean %v, max %v", step, len(d), (sum / time.Duration(len(d))).Round(time.Microsecond), slices.Max(d).Round(time.Microsecond))
	}
}

func (l *lambda) client() (*secretsmanager.Client, error) {
	for _, i := range l.c.Running() {
		if nd := l.c.Node(i); nd != nil && nd.AWSAddr() != "" {
			return secretsmanager.New(secretsmanager.Options{
				Region:       clustertest.DefaultRegion,
				Credentials:  credentials.NewStaticCredentialsProvider(clustertest.RootAccessKeyID, clustertest.RootSecretAccessKey, ""),
				BaseEndpoint: aws.String("http://" + nd.AWSAddr()),
				HTTPClient:   &http.Client{Timeout: clustertest.RPCTimeout},
			}), nil
		}
	}
	return nil, errors.New("no running node")
}

func (l *lambda) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := rotation.VerifyRequest(r, body, l.secret, "rot"); err != nil {
		http.Error(w, `{"errorMessage":"bad signature"}`, http.StatusUnauthorized)
		return
	}
	var ev struct{ Step, SecretId, ClientRequestToken string }
	if err := json.Unmarshal(body, &ev); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	l.mu.Lock()
	l.steps = append(l.steps, ev.Step)
	l.mu.Unlock()
	start := time.Now()
	err := l.handle(r.Context(), ev.Step, ev.SecretId, ev.ClientRequestToken)
	l.mu.Lock()
	if l.took == nil {
		l.took = map[string][]time.Duration{}
	}
	l.took[ev.Step] = append(l.took[ev.Step], time.Since(start))
	l.mu.Unlock()
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		_ = json.NewEncoder(w).Encode(map[string]string{"errorType": "ValueError", "errorMessage": err.Error()})
	}
}

func (l *lambda) handle(ctx context.Context, step, arn, token string) error {
	sm, err := l.client()
	if err != nil {
		return err
	}
	md, err := sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: &arn})
	if err != nil {
		return err
	}
	if !aws.ToBool(md.RotationEnabled) {
		return fmt.Errorf("secret %s is not enabled for rotation", arn)
	}
	stages, ok := md.VersionIdsToStages[token]
	if !ok {
		return fmt.Errorf("secret version %s has no stage for rotation of secret %s", token, arn)
	}
	if slices.Contains(stages, "AWSCURRENT") {
		return nil
	}
	if !slices.Contains(stages, "AWSPENDING") {
		return fmt.Errorf("secret version %s not set as AWSPENDING for rotation of secret %s", token, arn)
	}
	switch step {
	case "createSecret":
		if _, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: &arn, VersionStage: aws.String("AWSCURRENT")}); err != nil {
			return err
		}
		_, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: &arn, VersionId: &token, VersionStage: aws.String("AWSPENDING")})
		var nf *types.ResourceNotFoundException
		if !errors.As(err, &nf) {
			return err
		}
		pw, err := sm.GetRandomPassword(ctx, &secretsmanager.GetRandomPasswordInput{ExcludeCharacters: aws.String(`:/@"'\`)})
		if err != nil {
			return err
		}
		_, err = sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: &arn, ClientRequestToken: &token,
			SecretString: pw.RandomPassword, VersionStages: []string{"AWSPENDING"}})
		return err
	case "setSecret":
		l.mu.Lock()
		fail := l.failSet
		l.mu.Unlock()
		if fail {
			return errors.New("Unable to log into database with previous, current, or pending secret")
		}
		return nil
	case "testSecret":
		l.mu.Lock()
		hold, reached := l.holdTest, l.reached
		l.mu.Unlock()
		if hold != nil {
			select {
			case <-reached:
			default:
				close(reached)
			}
			select {
			case <-hold:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		_, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: &arn, VersionId: &token, VersionStage: aws.String("AWSPENDING")})
		return err
	case "finishSecret":
		current := ""
		for id, s := range md.VersionIdsToStages {
			if slices.Contains(s, "AWSCURRENT") {
				current = id
			}
		}
		_, err := sm.UpdateSecretVersionStage(ctx, &secretsmanager.UpdateSecretVersionStageInput{SecretId: &arn,
			VersionStage: aws.String("AWSCURRENT"), MoveToVersionId: &token, RemoveFromVersionId: &current})
		return err
	}
	return fmt.Errorf("invalid step %s", step)
}

func (l *lambda) calls() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.steps)
}

// startLambda serves l and registers it with the region as "rot".
func startLambda(t *testing.T, c *clustertest.Cluster, l *lambda) string {
	t.Helper()
	srv := httptest.NewServer(l)
	t.Cleanup(srv.Close)
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	// httptest serves plain http on a loopback address, which a function
	// may be registered at only when it says so.
	res, err := c.Rotation(0).RegisterFunction(ctx, &cofferv1.RegisterFunctionRequest{Name: "rot", Url: srv.URL, SharedSecret: string(l.secret), InsecureHttp: true})
	if err != nil {
		t.Fatal(err)
	}
	return res.GetFunction().GetArn()
}

func describeSecret(t *testing.T, c *clustertest.Cluster, id string) *cofferv1.DescribeSecretResponse {
	t.Helper()
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	d, err := c.Client(c.Running()[0]).DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: id})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func rotationStages(d *cofferv1.DescribeSecretResponse) map[string][]string {
	out := map[string][]string{}
	for id, s := range d.GetVersionIdsToStages() {
		out[id] = s.GetStages()
	}
	return out
}

// TestHTTPRotationFunctionRetriesUntilFixed: a Lambda-style function that
// fails in setSecret is retried; the error shows in DescribeSecret while
// AWSCURRENT stays; once fixed the rotation completes with the labels AWS
// sets. RotateSecret goes through the AWS API with the Go SDK.
func TestHTTPRotationFunctionRetriesUntilFixed(t *testing.T) {
	c := rotationCluster(t)
	l := &lambda{t: t, c: c, secret: []byte("hmac-shared-secret"), failSet: true}
	fnARN := startLambda(t, c, l)
	sm, err := l.client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	created, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("app/db"), SecretString: aws.String("first-password")})
	if err != nil {
		t.Fatal(err)
	}
	first := aws.ToString(created.VersionId)
	rot, err := sm.RotateSecret(ctx, &secretsmanager.RotateSecretInput{SecretId: aws.String("app/db"), RotationLambdaARN: &fnARN,
		RotationRules: &types.RotationRulesType{AutomaticallyAfterDays: aws.Int64(30)}})
	if err != nil {
		t.Fatal(err)
	}
	token := aws.ToString(rot.VersionId)

	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		st := describeSecret(t, c, "app/db").GetRotationStatus()
		if st.GetAttempts() < 2 {
			return fmt.Errorf("rotation status %v, want two failed attempts", st)
		}
		return nil
	})
	d := describeSecret(t, c, "app/db")
	st := d.GetRotationStatus()
	if st.GetClientRequestToken() != token || st.GetLastErrorStep() != "setSecret" ||
		!strings.Contains(st.GetLastError(), "HTTP 500: ValueError: Unable to log into database with previous, current, or pending secret") {
		t.Fatalf("rotation status %v", st)
	}
	if got := rotationStages(d); !slices.Equal(got[first], []string{"AWSCURRENT"}) || !slices.Equal(got[token], []string{"AWSPENDING"}) {
		t.Fatalf("stages during the failing rotation: %v", got)
	}
	v, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/db")})
	if err != nil || aws.ToString(v.SecretString) != "first-password" {
		t.Fatalf("AWSCURRENT during the failing rotation: %v %v", aws.ToString(v.VersionId), err)
	}
	_, err = sm.RotateSecret(ctx, &secretsmanager.RotateSecretInput{SecretId: aws.String("app/db")})
	var ir *types.InvalidRequestException
	if !errors.As(err, &ir) || aws.ToString(ir.Message) != "A previous rotation isn't complete. That rotation will be reattempted." {
		t.Fatalf("RotateSecret during a rotation: %v", err)
	}

	l.mu.Lock()
	l.failSet = false
	l.mu.Unlock()
	fixed := time.Now()
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		if d := describeSecret(t, c, "app/db"); d.GetRotationStatus() != nil || d.GetLastRotatedDate() == nil {
			return fmt.Errorf("rotation status %v, last rotated %v", d.GetRotationStatus(), d.GetLastRotatedDate())
		}
		return nil
	})
	t.Logf("rotation completed %v after the function was fixed (retry backoff 100ms·2ⁿ ≤ 500ms, engine tick 50ms)", time.Since(fixed).Round(time.Millisecond))
	l.report(t)
	md, err := sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String("app/db")})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{first: {"AWSPREVIOUS"}, token: {"AWSCURRENT"}}
	if len(md.VersionIdsToStages) != 2 || !slices.Equal(md.VersionIdsToStages[first], want[first]) || !slices.Equal(md.VersionIdsToStages[token], want[token]) {
		t.Fatalf("VersionIdsToStages = %v, want %v", md.VersionIdsToStages, want)
	}
	if !aws.ToBool(md.RotationEnabled) || md.NextRotationDate == nil || md.LastRotatedDate == nil ||
		!md.NextRotationDate.Equal(md.LastRotatedDate.UTC().Truncate(24*time.Hour).AddDate(0, 0, 30)) {
		t.Fatalf("rotation dates: enabled %v last %v next %v", aws.ToBool(md.RotationEnabled), md.LastRotatedDate, md.NextRotationDate)
	}
	v, err = sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/db")})
	if err != nil || aws.ToString(v.VersionId) != token || len(aws.ToString(v.SecretString)) != 32 {
		t.Fatalf("AWSCURRENT after rotation: %v %v", aws.ToString(v.VersionId), err)
	}
	t.Logf("function calls: %v", l.calls())
}

// TestRotationSurvivesLeaderFailover kills the leader while the rotation
// is between setSecret and finishSecret: the new leader resumes the same
// token, and exactly one new version becomes AWSCURRENT.
func TestRotationSurvivesLeaderFailover(t *testing.T) {
	c := rotationCluster(t)
	l := &lambda{t: t, c: c, secret: []byte("hmac-shared-secret"), holdTest: make(chan struct{}), reached: make(chan struct{})}
	fnARN := startLambda(t, c, l)
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	v := "first-password"
	created, err := c.Client(0).CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "failover/db", SecretString: &v})
	if err != nil {
		t.Fatal(err)
	}
	rot, err := c.Client(1).RotateSecret(ctx, &cofferv1.RotateSecretRequest{SecretId: "failover/db", RotationLambdaArn: fnARN})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.reached:
	case <-time.After(clustertest.ConvergeTimeout):
		t.Fatalf("testSecret never called; steps %v", l.calls())
	}
	if st := describeSecret(t, c, "failover/db").GetRotationStatus(); st.GetStep() != "testSecret" || st.GetAttempts() != 0 {
		t.Fatalf("status while testSecret runs: %v", st)
	}
	old := c.Leader()
	killed := time.Now()
	c.Stop(old)
	l.mu.Lock()
	close(l.holdTest)
	l.mu.Unlock()
	newLeader := c.WaitLeader(c.Running()...)
	t.Logf("killed leader %s during testSecret; %s took over", c.ID(old), c.ID(newLeader))

	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		if d := describeSecret(t, c, "failover/db"); d.GetRotationStatus() != nil || d.GetLastRotatedDate() == nil {
			return fmt.Errorf("rotation status %v", d.GetRotationStatus())
		}
		return nil
	})
	t.Logf("rotation finished %v after the leader was stopped (Stop included)", time.Since(killed).Round(time.Millisecond))
	l.report(t)
	ctx2, cancel2 := clustertest.RPCContext()
	defer cancel2()
	versions, err := c.Client(newLeader).ListSecretVersionIds(ctx2, &cofferv1.ListSecretVersionIdsRequest{SecretId: "failover/db", IncludeDeprecated: true})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, v := range versions.GetVersions() {
		got[v.GetVersionId()] = v.GetVersionStages()
	}
	want := map[string][]string{created.GetVersionId(): {"AWSPREVIOUS"}, rot.GetVersionId(): {"AWSCURRENT"}}
	if len(got) != 2 || !slices.Equal(got[created.GetVersionId()], want[created.GetVersionId()]) || !slices.Equal(got[rot.GetVersionId()], want[rot.GetVersionId()]) {
		t.Fatalf("versions after failover %v, want exactly %v", got, want)
	}
	calls := l.calls()
	if n := strings.Count(strings.Join(calls, " "), "createSecret"); n != 1 {
		t.Fatalf("createSecret ran %d times (%v); the new leader must resume, not restart", n, calls)
	}
	t.Logf("function calls: %v", calls)
}
