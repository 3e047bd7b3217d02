package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/rotation"
	"github.com/cofferhq/coffer/storage"
)

// handClock is a clock the test moves by hand.
type handClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *handClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *handClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

func (c *handClock) Add(d time.Duration) { c.Set(c.Now().Add(d)) }

// templateFunction is a Go rotation function that does what the AWS
// rotation template does against the API, with hooks that make setSecret
// or testSecret fail.
type templateFunction struct {
	api rotation.SecretsAPI

	mu       sync.Mutex
	calls    []rotation.Step
	failStep rotation.Step
}

func (f *templateFunction) Invoke(ctx context.Context, ev rotation.Event) error {
	f.mu.Lock()
	f.calls = append(f.calls, ev.Step)
	fail := f.failStep
	f.mu.Unlock()
	d, err := f.api.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: ev.SecretID})
	if err != nil {
		return err
	}
	if !d.GetRotationEnabled() {
		return errors.New("secret is not enabled for rotation")
	}
	stages, ok := d.GetVersionIdsToStages()[ev.ClientRequestToken]
	if !ok {
		return fmt.Errorf("secret version %s has no stage for rotation", ev.ClientRequestToken)
	}
	if slices.Contains(stages.GetStages(), storage.StageCurrent) {
		return nil
	}
	if ev.Step != rotation.StepCreateSecret && !slices.Contains(stages.GetStages(), storage.StagePending) {
		return fmt.Errorf("secret version %s not set as AWSPENDING for rotation", ev.ClientRequestToken)
	}
	if ev.Step == fail {
		return fmt.Errorf("%s: unable to log into the database", ev.Step)
	}
	switch ev.Step {
	case rotation.StepCreateSecret:
		if _, err := f.api.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: ev.SecretID, VersionStage: storage.StageCurrent}); err != nil {
			return err
		}
		_, err := f.api.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: ev.SecretID, VersionId: ev.ClientRequestToken, VersionStage: storage.StagePending})
		if AsAPIError(err).Type != TypeResourceNotFound {
			return err
		}
		pw, err := f.api.GetRandomPassword(ctx, &cofferv1.GetRandomPasswordRequest{ExcludeCharacters: `:/@"'\`})
		if err != nil {
			return err
		}
		_, err = f.api.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: ev.SecretID, ClientRequestToken: ev.ClientRequestToken,
			SecretString: &pw.RandomPassword, VersionStages: []string{storage.StagePending}})
		return err
	case rotation.StepFinishSecret:
		current := ""
		for id, s := range d.GetVersionIdsToStages() {
			if slices.Contains(s.GetStages(), storage.StageCurrent) {
				current = id
			}
		}
		_, err := f.api.UpdateSecretVersionStage(ctx, &cofferv1.UpdateSecretVersionStageRequest{SecretId: ev.SecretID,
			VersionStage: storage.StageCurrent, MoveToVersionId: ev.ClientRequestToken, RemoveFromVersionId: current})
		return err
	}
	return nil
}

func (f *templateFunction) steps() []rotation.Step {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *templateFunction) setFail(s rotation.Step) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failStep = s
}

const testRotator = "coffer:rotator/test-template"

// rotationRig is a service with a hand-driven clock and engine.
type rotationRig struct {
	t      *testing.T
	svc    *Service
	clock  *handClock
	fn     *templateFunction
	engine *rotation.Engine
	tokens int
}

func newRotationRig(t *testing.T) *rotationRig {
	t.Helper()
	svc, _ := newTestService(t)
	r := &rotationRig{t: t, svc: svc, clock: &handClock{now: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}}
	svc.now = r.clock.Now
	r.fn = &templateFunction{api: svc}
	svc.SetRotators(map[string]rotation.Function{testRotator: r.fn})
	r.engine = rotation.NewEngine(rotation.Config{
		Now: svc.Now, RetryBase: time.Minute, RetryMax: 10 * time.Minute,
		NewToken: func() string { r.tokens++; return fmt.Sprintf("scheduled-%026d", r.tokens) },
	}, svc.RotationBackend(), svc, svc.ResolveRotationFunction, slog.New(slog.NewTextHandler(io.Discard, nil)))
	return r
}

// tick runs one engine pass and waits for the rotations it started.
func (r *rotationRig) tick() {
	r.engine.Tick(context.Background())
	r.engine.Wait()
}

func (r *rotationRig) describe(id string) *cofferv1.DescribeSecretResponse {
	r.t.Helper()
	d, err := r.svc.DescribeSecret(context.Background(), &cofferv1.DescribeSecretRequest{SecretId: id})
	if err != nil {
		r.t.Fatal(err)
	}
	return d
}

func (r *rotationRig) create(name string) string {
	r.t.Helper()
	v := "initial"
	res, err := r.svc.CreateSecret(context.Background(), &cofferv1.CreateSecretRequest{Name: name, SecretString: &v, ClientRequestToken: tokA})
	if err != nil {
		r.t.Fatal(err)
	}
	return res.GetArn()
}

// stagesByVersion returns VersionIdsToStages as plain slices.
func stagesByVersion(d *cofferv1.DescribeSecretResponse) map[string][]string {
	out := map[string][]string{}
	for id, s := range d.GetVersionIdsToStages() {
		out[id] = s.GetStages()
	}
	return out
}

func wantStages(t *testing.T, d *cofferv1.DescribeSecretResponse, want map[string][]string) {
	t.Helper()
	got := stagesByVersion(d)
	if len(got) != len(want) {
		t.Fatalf("VersionIdsToStages = %v, want %v", got, want)
	}
	for id, w := range want {
		g := slices.Clone(got[id])
		slices.Sort(g)
		w = slices.Clone(w)
		slices.Sort(w)
		if !slices.Equal(g, w) {
			t.Fatalf("VersionIdsToStages = %v, want %v", got, want)
		}
	}
}

func withRules(r *cofferv1.RotationRules) *cofferv1.RotateSecretRequest {
	return &cofferv1.RotateSecretRequest{SecretId: "v", RotationLambdaArn: testRotator, RotationRules: r}
}

func TestRotateSecretValidation(t *testing.T) {
	r := newRotationRig(t)
	ctx := context.Background()
	r.create("v")
	cases := []struct {
		name string
		req  *cofferv1.RotateSecretRequest
		typ  string
		msg  string
	}{
		{"no function", &cofferv1.RotateSecretRequest{SecretId: "v"}, TypeInvalidRequest, "No Lambda rotation function ARN is associated with this secret."},
		{"unknown function", &cofferv1.RotateSecretRequest{SecretId: "v", RotationLambdaArn: "arn:aws:lambda:us-east-1:123456789012:function:nope"},
			TypeAccessDeniedException, msgCannotInvoke},
		{"days too many", &cofferv1.RotateSecretRequest{SecretId: "v", RotationLambdaArn: testRotator, RotationRules: &cofferv1.RotationRules{AutomaticallyAfterDays: new(int64(1001))}},
			TypeValidation, "1 validation error detected: Value '1001' at 'rotationRules.automaticallyAfterDays' failed to satisfy constraint: Member must have value less than or equal to 1000"},
		{"both schedules", withRules(&cofferv1.RotationRules{AutomaticallyAfterDays: new(int64(3)), ScheduleExpression: "rate(3 days)"}), TypeInvalidParameter,
			"You can't specify both AutomaticallyAfterDays and ScheduleExpression."},
		{"too often", withRules(&cofferv1.RotationRules{ScheduleExpression: "rate(2 hours)"}), TypeInvalidParameter,
			"The schedule expression rate(2 hours) rotates more often than every four hours."},
		{"bad duration", withRules(&cofferv1.RotationRules{ScheduleExpression: "rate(2 days)", Duration: "2d"}), TypeValidation,
			"1 validation error detected: Value at 'rotationRules.duration' failed to satisfy constraint: Member must satisfy regular expression pattern: [0-9h]+"},
		{"window into the next day", withRules(&cofferv1.RotationRules{ScheduleExpression: "cron(0 22 * * ? *)", Duration: "3h"}), TypeInvalidParameter,
			"The rotation window (Duration 3h) must not extend into the next UTC day: cron(0 22 * * ? *) opens a window at 22:00 UTC."},
		{"window into the next window", withRules(&cofferv1.RotationRules{ScheduleExpression: "rate(6 hours)", Duration: "7h"}), TypeInvalidParameter,
			"The rotation window (Duration 7h) must not extend into the next rotation window: rate(6 hours) opens one every 6h."},
		{"missing secret", &cofferv1.RotateSecretRequest{SecretId: "nope", RotationLambdaArn: testRotator}, TypeResourceNotFound, "Secrets Manager can't find the specified secret."},
	}
	for _, c := range cases {
		_, err := r.svc.RotateSecret(ctx, c.req)
		if ae := AsAPIError(err); err == nil || ae.Type != c.typ || ae.Message != c.msg {
			t.Errorf("%s: got %v, want %s: %s", c.name, err, c.typ, c.msg)
		}
	}
}

// TestRotationRetriesAndRefusesAnother: a function failing in setSecret is
// retried with backoff; the error and attempts show in DescribeSecret,
// AWSCURRENT stays, another RotateSecret is refused, and once the function
// is fixed the rotation completes with the labels AWS would set.
func TestRotationRetriesAndRefusesAnother(t *testing.T) {
	r := newRotationRig(t)
	ctx := context.Background()
	arn := r.create("db")
	r.fn.setFail(rotation.StepSetSecret)
	res, err := r.svc.RotateSecret(ctx, &cofferv1.RotateSecretRequest{SecretId: "db", RotationLambdaArn: testRotator, ClientRequestToken: tokB,
		RotationRules: &cofferv1.RotationRules{AutomaticallyAfterDays: new(int64(30))}})
	if err != nil || res.GetVersionId() != tokB || res.GetArn() != arn {
		t.Fatalf("RotateSecret = %v, %v", res, err)
	}
	r.tick()
	d := r.describe("db")
	st := d.GetRotationStatus()
	if st.GetClientRequestToken() != tokB || st.GetAttempts() != 1 || st.GetLastErrorStep() != "setSecret" || st.GetStep() != "createSecret" ||
		st.GetLastError() != "setSecret: unable to log into the database" || !st.GetNextAttemptDate().AsTime().Equal(r.clock.Now().Add(time.Minute)) {
		t.Fatalf("RotationStatus = %v", st)
	}
	wantStages(t, d, map[string][]string{tokA: {"AWSCURRENT"}, tokB: {"AWSPENDING"}})
	if d.GetLastRotatedDate() != nil {
		t.Fatal("LastRotatedDate set by a failed rotation")
	}

	_, err = r.svc.RotateSecret(ctx, &cofferv1.RotateSecretRequest{SecretId: "db", ClientRequestToken: tokC})
	if ae := AsAPIError(err); ae == nil || ae.Type != TypeInvalidRequest || ae.Message != "A previous rotation isn't complete. That rotation will be reattempted." {
		t.Fatalf("second RotateSecret: %v", err)
	}

	r.tick() // the backoff has not passed: nothing runs
	if n := len(r.fn.steps()); n != 2 {
		t.Fatalf("function called %d times before the backoff passed, want 2", n)
	}
	r.clock.Add(time.Minute)
	r.tick()
	if st := r.describe("db").GetRotationStatus(); st.GetAttempts() != 2 || !st.GetNextAttemptDate().AsTime().Equal(r.clock.Now().Add(2*time.Minute)) {
		t.Fatalf("after the second attempt: %v", st)
	}
	want := []rotation.Step{"createSecret", "setSecret", "createSecret", "setSecret"}
	if got := r.fn.steps(); !slices.Equal(got, want) {
		t.Fatalf("steps %v, want %v", got, want)
	}

	r.fn.setFail("")
	r.clock.Add(2 * time.Minute)
	r.tick()
	want = append(want, "createSecret", "setSecret", "testSecret", "finishSecret")
	if got := r.fn.steps(); !slices.Equal(got, want) {
		t.Fatalf("steps %v, want %v", got, want)
	}
	d = r.describe("db")
	if d.GetRotationStatus() != nil || !d.GetLastRotatedDate().AsTime().Equal(r.clock.Now()) {
		t.Fatalf("after the fix: status %v, LastRotatedDate %v", d.GetRotationStatus(), d.GetLastRotatedDate())
	}
	wantStages(t, d, map[string][]string{tokA: {"AWSPREVIOUS"}, tokB: {"AWSCURRENT"}})
	v, err := r.svc.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "db"})
	if err != nil || v.GetVersionId() != tokB || len(v.GetSecretString()) != 32 {
		t.Fatalf("AWSCURRENT after rotation: %v %v", v.GetVersionId(), err)
	}
}

// TestRotateImmediatelyFalse runs only testSecret, on an AWSPENDING copy
// that is removed afterwards; AWSCURRENT and LastRotatedDate stay.
func TestRotateImmediatelyFalse(t *testing.T) {
	r := newRotationRig(t)
	ctx := context.Background()
	r.create("db")
	_, err := r.svc.RotateSecret(ctx, &cofferv1.RotateSecretRequest{SecretId: "db", RotationLambdaArn: testRotator, ClientRequestToken: tokB,
		RotateImmediately: new(false), RotationRules: &cofferv1.RotationRules{ScheduleExpression: "rate(10 days)"}})
	if err != nil {
		t.Fatal(err)
	}
	if st := r.describe("db").GetRotationStatus(); !st.GetTestOnly() || st.GetStep() != "testSecret" {
		t.Fatalf("status = %v", st)
	}
	r.tick()
	if got := r.fn.steps(); !slices.Equal(got, []rotation.Step{"testSecret"}) {
		t.Fatalf("steps = %v, want only testSecret", got)
	}
	d := r.describe("db")
	if d.GetRotationStatus() != nil || d.GetLastRotatedDate() != nil || !d.GetRotationEnabled() {
		t.Fatalf("after the test: %v", d)
	}
	wantStages(t, d, map[string][]string{tokA: {"AWSCURRENT"}})
	if !d.GetNextRotationDate().AsTime().Equal(time.Date(2026, 3, 11, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("NextRotationDate = %v", d.GetNextRotationDate().AsTime())
	}
}

// TestRotateImmediatelyFalseCurrentMoves: a test-only run fails, and
// AWSCURRENT moves (a manual put) before its retry. The retry tests the
// copy the first attempt made rather than failing on every attempt with
// the token in use, and once the function passes the run ends leaving the
// labels as the manual put set them.
func TestRotateImmediatelyFalseCurrentMoves(t *testing.T) {
	r := newRotationRig(t)
	ctx := context.Background()
	r.create("db")
	r.fn.setFail(rotation.StepTestSecret)
	if _, err := r.svc.RotateSecret(ctx, &cofferv1.RotateSecretRequest{SecretId: "db", RotationLambdaArn: testRotator, ClientRequestToken: tokB,
		RotateImmediately: new(false), RotationRules: &cofferv1.RotationRules{ScheduleExpression: "rate(10 days)"}}); err != nil {
		t.Fatal(err)
	}
	r.tick()
	if st := r.describe("db").GetRotationStatus(); !st.GetTestOnly() || st.GetAttempts() != 1 || st.GetLastErrorStep() != "testSecret" {
		t.Fatalf("after the first attempt: %v", st)
	}
	if v, err := r.svc.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "db", VersionId: tokB}); err != nil || v.GetSecretString() != "initial" {
		t.Fatalf("the test copy: %v", err)
	}

	manual := "changed by hand"
	if _, err := r.svc.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: "db", SecretString: &manual, ClientRequestToken: tokC}); err != nil {
		t.Fatal(err)
	}
	r.clock.Add(time.Minute)
	r.tick()
	st := r.describe("db").GetRotationStatus()
	if st.GetAttempts() != 2 || st.GetLastError() != "testSecret: unable to log into the database" {
		t.Fatalf("the retry after AWSCURRENT moved failed with %q (attempt %d), want the function's own error", st.GetLastError(), st.GetAttempts())
	}

	r.fn.setFail("")
	r.clock.Add(2 * time.Minute)
	r.tick()
	d := r.describe("db")
	if d.GetRotationStatus() != nil || d.GetLastRotatedDate() != nil {
		t.Fatalf("after the function passed: status %v, LastRotatedDate %v", d.GetRotationStatus(), d.GetLastRotatedDate())
	}
	if got := r.fn.steps(); !slices.Equal(got, []rotation.Step{"testSecret", "testSecret", "testSecret"}) {
		t.Fatalf("steps = %v, want testSecret three times", got)
	}
	wantStages(t, d, map[string][]string{tokA: {"AWSPREVIOUS"}, tokC: {"AWSCURRENT"}})
	if v, err := r.svc.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "db"}); err != nil || v.GetSecretString() != manual {
		t.Fatalf("AWSCURRENT after the test: %v", err)
	}
}

// TestRotationSchedules drives AutomaticallyAfterDays, rate and cron
// schedules with the hand clock, and a manual put resetting one.
func TestRotationSchedules(t *testing.T) {
	r := newRotationRig(t)
	ctx := context.Background()
	day := func(d int, h int) time.Time { return time.Date(2026, 3, d, h, 0, 0, 0, time.UTC) }
	rotations := func(string) int {
		n := 0
		for _, s := range r.fn.steps() {
			if s == rotation.StepFinishSecret {
				n++
			}
		}
		return n
	}
	for _, c := range []struct{ name, expr string }{{"days", ""}, {"rate", "rate(5 days)"}, {"cron", "cron(0 6 ? * MON *)"}} {
		r.create(c.name)
		rules := &cofferv1.RotationRules{AutomaticallyAfterDays: new(int64(5)), Duration: "2h"}
		if c.expr != "" {
			rules = &cofferv1.RotationRules{ScheduleExpression: c.expr, Duration: "2h"}
		}
		if _, err := r.svc.RotateSecret(ctx, &cofferv1.RotateSecretRequest{SecretId: c.name, RotationLambdaArn: testRotator, RotationRules: rules}); err != nil {
			t.Fatal(err)
		}
	}
	r.tick() // the three immediate rotations, on 1 March at 10:00
	if n := rotations(""); n != 3 {
		t.Fatalf("%d immediate rotations, want 3", n)
	}
	for name, want := range map[string]time.Time{"days": day(6, 0), "rate": day(6, 0), "cron": day(2, 6)} {
		d := r.describe(name)
		if !d.GetNextRotationDate().AsTime().Equal(want) || !d.GetLastRotatedDate().AsTime().Equal(day(1, 10)) {
			t.Fatalf("%s: NextRotationDate %v LastRotatedDate %v, want %v and 1 March 10:00", name, d.GetNextRotationDate().AsTime(), d.GetLastRotatedDate().AsTime(), want)
		}
	}

	// 2 March (a Monday) 06:30: only the cron schedule is due.
	r.clock.Set(day(2, 6).Add(30 * time.Minute))
	r.tick()
	if n := rotations(""); n != 4 || !r.describe("cron").GetLastRotatedDate().AsTime().Equal(r.clock.Now()) {
		t.Fatalf("after Monday 06:30: %d rotations, cron last rotated %v", n, r.describe("cron").GetLastRotatedDate().AsTime())
	}
	if got := r.describe("cron").GetNextRotationDate().AsTime(); !got.Equal(day(9, 6)) {
		t.Fatalf("cron next = %v, want Monday 9 March 06:00", got)
	}

	// A manual put on 4 March counts as a rotation of "rate".
	v := "by hand"
	r.clock.Set(day(4, 12))
	if _, err := r.svc.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: "rate", SecretString: &v, ClientRequestToken: tokC}); err != nil {
		t.Fatal(err)
	}
	if got := r.describe("rate").GetNextRotationDate().AsTime(); !got.Equal(day(9, 0)) {
		t.Fatalf("rate next after a manual put = %v, want 9 March", got)
	}

	// 6 March 01:00: "days" is in its window; "rate" was reset.
	r.clock.Set(day(6, 1))
	r.tick()
	if n := rotations(""); n != 5 || !r.describe("days").GetLastRotatedDate().AsTime().Equal(day(6, 1)) {
		t.Fatalf("on 6 March: %d rotations", n)
	}
	// 9 March 03:00: "rate"'s 2h window (00:00–02:00) was missed, so it
	// waits for the next one; cron's window (06:00) has not opened.
	r.clock.Set(day(9, 3))
	r.tick()
	if n := rotations(""); n != 5 {
		t.Fatalf("a missed window ran late: %d rotations", n)
	}
	if got := r.describe("rate").GetNextRotationDate().AsTime(); !got.Equal(day(14, 0)) {
		t.Fatalf("rate next after a missed window = %v, want 14 March", got)
	}

	r.clock.Set(day(11, 1))
	r.tick()
	r.clock.Set(day(14, 1))
	r.tick()
	if n := rotations(""); n != 7 || !r.describe("days").GetLastRotatedDate().AsTime().Equal(day(11, 1)) ||
		!r.describe("rate").GetLastRotatedDate().AsTime().Equal(day(14, 1)) {
		t.Fatalf("by 14 March: %d rotations, want 7", n)
	}

	// Cancel: no more scheduled rotations, NextRotationDate and
	// LastRotatedDate gone as AWS shows them.
	if _, err := r.svc.CancelRotateSecret(ctx, &cofferv1.CancelRotateSecretRequest{SecretId: "cron"}); err != nil {
		t.Fatal(err)
	}
	r.clock.Set(day(16, 6).Add(time.Minute))
	r.tick()
	d := r.describe("cron")
	if d.GetRotationEnabled() || d.GetNextRotationDate() != nil || d.GetLastRotatedDate() != nil || d.GetRotationLambdaArn() != testRotator {
		t.Fatalf("cancelled: %v", d)
	}
	if n := rotations(""); n != 7 {
		t.Fatalf("a cancelled schedule rotated: %d rotations", n)
	}
}

// TestRotationFunctionRegistry: a registered function is listed after the
// built-ins, named by name or ARN in RotateSecret, resolved with its
// signing secret, and gone after deregistration.
func TestRotationFunctionRegistry(t *testing.T) {
	r := newRotationRig(t)
	ctx := context.Background()
	api := NewRotation(r.svc)
	const key = "sixteen-bytes!!!"
	for _, bad := range []*cofferv1.RegisterFunctionRequest{
		{Name: "has space", Url: "https://x", SharedSecret: key},
		{Name: "ok", Url: "ftp://x", SharedSecret: key},
		{Name: "ok", Url: "/relative", SharedSecret: key},
		// A secret is required, and https unless asked otherwise for this host.
		{Name: "ok", Url: "https://x"},
		{Name: "ok", Url: "http://rot.example/hook", SharedSecret: key},
		{Name: "ok", Url: "http://rot.example/hook", SharedSecret: key, InsecureHttp: true},
		{Name: "ok", Url: "http://127.0.0.1:8080/hook", SharedSecret: key},
		{Name: "ok", Url: "https://rot.example/hook", SharedSecret: key, InsecureHttp: true},
	} {
		if _, err := api.RegisterFunction(ctx, bad); apiType(err) != TypeInvalidParameter && apiType(err) != TypeValidation {
			t.Errorf("RegisterFunction(%v) = %v, want refused", bad, err)
		}
	}
	local, err := api.RegisterFunction(ctx, &cofferv1.RegisterFunctionRequest{Name: "local", Url: "http://127.0.0.1:8080/hook", SharedSecret: key, InsecureHttp: true})
	if err != nil || !local.GetFunction().GetInsecureHttp() {
		t.Fatalf("RegisterFunction of a loopback http function with InsecureHttp = %v, %v", local, err)
	}
	if _, err := api.DeregisterFunction(ctx, &cofferv1.DeregisterFunctionRequest{Name: "local"}); err != nil {
		t.Fatal(err)
	}
	_, err = api.RegisterFunction(ctx, &cofferv1.RegisterFunctionRequest{Name: "rot", Url: "https://rot.example/hook", SharedSecret: "fifteen-bytes!!"})
	if ae := AsAPIError(err); ae == nil || ae.Type != TypeInvalidParameter || !strings.Contains(ae.Message, "at least 16 bytes") {
		t.Fatalf("RegisterFunction with a 15-byte secret: %v, want InvalidParameterException", err)
	}
	const secret = "sixteen-bytes!!!"
	res, err := api.RegisterFunction(ctx, &cofferv1.RegisterFunctionRequest{Name: "rot", Url: "https://rot.example/hook", SharedSecret: secret})
	if err != nil {
		t.Fatal(err)
	}
	const arn = "arn:aws:lambda:us-east-1:123456789012:function:rot"
	if f := res.GetFunction(); f.GetArn() != arn || !f.GetSigned() || f.GetUrl() != "https://rot.example/hook" {
		t.Fatalf("registered %v", f)
	}
	list, err := api.ListFunctions(ctx, &cofferv1.ListFunctionsRequest{})
	if err != nil || len(list.GetFunctions()) != 2 || !list.GetFunctions()[0].GetBuiltin() || list.GetFunctions()[1].GetArn() != arn {
		t.Fatalf("ListFunctions = %v, %v", list, err)
	}
	fn, err := r.svc.ResolveRotationFunction(ctx, arn)
	if hf, ok := fn.(*rotation.HTTPFunction); err != nil || !ok || string(hf.Secret) != secret || hf.URL != "https://rot.example/hook" || hf.Name != "rot" {
		t.Fatalf("ResolveRotationFunction = %#v, %v", fn, err)
	}
	r.create("db")
	if _, err := r.svc.RotateSecret(ctx, &cofferv1.RotateSecretRequest{SecretId: "db", RotationLambdaArn: "rot", RotateImmediately: new(false)}); err != nil {
		t.Fatal(err)
	}
	if got := r.describe("db").GetRotationLambdaArn(); got != arn {
		t.Fatalf("stored RotationLambdaARN %q, want the function's ARN", got)
	}
	if _, err := api.DeregisterFunction(ctx, &cofferv1.DeregisterFunctionRequest{Name: arn}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.svc.ResolveRotationFunction(ctx, arn); !errors.Is(err, ErrUnknownFunction) {
		t.Fatalf("resolve after deregistration: %v", err)
	}
	if _, err := api.DeregisterFunction(ctx, &cofferv1.DeregisterFunctionRequest{Name: "rot"}); apiType(err) != TypeResourceNotFound {
		t.Fatalf("second deregistration: %v", err)
	}
}
