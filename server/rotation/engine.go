package rotation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/storage"
)

// Backend is what the engine needs from the node: leadership, the local
// state, and the region's log.
type Backend interface {
	// IsLeader reports whether this node leads the region.
	IsLeader() bool
	// Secret reads one secret from local state by ARN.
	Secret(arn string) (*storagev1.Secret, error)
	// Secrets calls fn for every secret in local state.
	Secrets(fn func(*storagev1.Secret) bool) error
	// Propose commits cmd (stamping its header) and returns its result;
	// a domain failure is the error.
	Propose(ctx context.Context, cmd *raftv1.Command) (*storage.Result, error)
}

// Resolver finds the function a RotationLambdaARN names.
type Resolver func(ctx context.Context, arn string) (Function, error)

// Config tunes the engine. Zero fields take the defaults.
type Config struct {
	// Interval is how often the leader looks for due work.
	Interval time.Duration
	// RetryBase is the wait after a rotation's first failure; it doubles
	// with each further failure, up to RetryMax.
	RetryBase time.Duration
	RetryMax  time.Duration
	// StepTimeout bounds one call of a function.
	StepTimeout time.Duration
	// Now is the clock schedules are read against; it must be the clock
	// that stamps the commands (server.Service.Now).
	Now func() time.Time
	// NewToken makes the ClientRequestToken of a scheduled rotation.
	NewToken func() string
	// Observer, when set, is told of failed steps and ended rotations
	// (metrics).
	Observer Observer
}

// Observer counts rotations (metrics.Metrics implements it). step is one
// of the four Lambda steps.
type Observer interface {
	RotationStepFailed(step string)
	// RotationEnded: success, with how long since the rotation started;
	// or a failed attempt (a later attempt may still succeed).
	RotationEnded(success bool, took time.Duration)
}

func (e *Engine) stepFailed(step string) {
	if o := e.cfg.Observer; o != nil {
		o.RotationStepFailed(step)
		o.RotationEnded(false, 0)
	}
}

func (e *Engine) completed(p *storagev1.RotationProgress) {
	if o := e.cfg.Observer; o != nil {
		var took time.Duration
		if st := p.GetStartedDate(); st != nil {
			took = e.cfg.Now().Sub(st.AsTime())
		}
		o.RotationEnded(true, took)
	}
}

// DefaultConfig holds the engine defaults.
func DefaultConfig() Config {
	return Config{
		Interval: 5 * time.Second, RetryBase: time.Minute, RetryMax: time.Hour, StepTimeout: 5 * time.Minute,
		Now: func() time.Time { return time.Now().UTC() }, NewToken: uuid.NewString,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Interval <= 0 {
		c.Interval = d.Interval
	}
	if c.RetryBase <= 0 {
		c.RetryBase = d.RetryBase
	}
	if c.RetryMax <= 0 {
		c.RetryMax = d.RetryMax
	}
	if c.StepTimeout <= 0 {
		c.StepTimeout = d.StepTimeout
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	if c.NewToken == nil {
		c.NewToken = d.NewToken
	}
	return c
}

// Engine runs rotations on the region leader: it starts the ones the
// schedules make due, and drives each rotation in progress through its
// steps, recording every outcome in the state machine. It keeps nothing
// that matters in memory: a new leader's engine picks up where the old
// one's record ends.
type Engine struct {
	cfg     Config
	backend Backend
	api     SecretsAPI
	resolve Resolver
	log     *slog.Logger

	mu      sync.Mutex
	running map[string]context.CancelFunc // secret ARN → its runner
	wg      sync.WaitGroup
}

// NewEngine builds an engine. api is the Secrets Manager API the engine
// uses for the AWSPENDING copy of a test-only run.
func NewEngine(cfg Config, backend Backend, api SecretsAPI, resolve Resolver, log *slog.Logger) *Engine {
	if log == nil {
		log = slog.Default()
	}
	return &Engine{cfg: cfg.withDefaults(), backend: backend, api: api, resolve: resolve, log: log, running: map[string]context.CancelFunc{}}
}

// Run ticks until ctx ends, then waits for its runners to stop.
func (e *Engine) Run(ctx context.Context) {
	t := time.NewTicker(e.cfg.Interval)
	defer t.Stop()
	defer e.Wait()
	for {
		select {
		case <-ctx.Done():
			e.stopAll()
			return
		case <-t.C:
			e.Tick(ctx)
		}
	}
}

// Wait blocks until every runner started so far has returned.
func (e *Engine) Wait() { e.wg.Wait() }

func (e *Engine) stopAll() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, cancel := range e.running {
		cancel()
	}
}

// Tick looks once for work: on the leader it starts a runner for every
// rotation whose next attempt is due and starts the scheduled rotations
// that are due; elsewhere it stops any runner left from leading.
func (e *Engine) Tick(ctx context.Context) {
	if !e.backend.IsLeader() {
		e.stopAll()
		return
	}
	now := e.cfg.Now()
	var resume, start []string
	err := e.backend.Secrets(func(sec *storagev1.Secret) bool {
		// A replica rotates in its primary region; its copy of the
		// rotation state is that region's, shipped.
		if sec.GetDeletedDate() != nil || sec.GetReplica() {
			return true
		}
		if p := sec.GetRotationProgress(); p != nil {
			if !p.GetNextAttemptDate().AsTime().After(now) {
				resume = append(resume, sec.GetArn())
			}
			return true
		}
		if e.scheduledNow(sec, now) {
			start = append(start, sec.GetArn())
		}
		return true
	})
	if err != nil {
		e.log.Warn("rotation scan failed", "err", err)
		return
	}
	for _, arn := range start {
		res, err := e.backend.Propose(ctx, &raftv1.Command{Op: &raftv1.Command_StartRotation{StartRotation: &raftv1.StartRotation{
			Arn: arn, Token: e.cfg.NewToken(),
		}}})
		if err != nil {
			e.log.Warn("scheduled rotation not started", "arn", arn, "err", err)
			continue
		}
		if res.VersionID != "" {
			e.log.Info("scheduled rotation started", "arn", arn, "token", res.VersionID)
			resume = append(resume, arn)
		}
	}
	for _, arn := range resume {
		e.launch(ctx, arn)
	}
}

// scheduledNow reports whether sec's schedule makes a rotation due.
func (e *Engine) scheduledNow(sec *storagev1.Secret, now time.Time) bool {
	if !sec.GetRotationEnabled() || sec.GetRotationLambdaArn() == "" || sec.GetRotationRules() == nil || storage.RotationInProgress(sec) {
		return false
	}
	s, err := ParseRules(sec.GetRotationRules())
	if err != nil {
		return false // stored rules were validated; a rule this build rejects waits for a RotateSecret
	}
	return s.Due(Anchor(sec), now)
}

// Anchor is the time sec's schedule counts from.
func Anchor(sec *storagev1.Secret) time.Time {
	if a := sec.GetRotationAnchorDate(); a != nil {
		return a.AsTime()
	}
	return sec.GetCreatedDate().AsTime()
}

// NextRotationDate is when sec's next rotation window opens as of now, or
// nil when rotation is off or has no schedule.
func NextRotationDate(sec *storagev1.Secret, now time.Time) *timestamppb.Timestamp {
	if !sec.GetRotationEnabled() || sec.GetRotationRules() == nil {
		return nil
	}
	s, err := ParseRules(sec.GetRotationRules())
	if err != nil {
		return nil
	}
	start, _, ok := s.Window(Anchor(sec), now)
	if !ok {
		return nil
	}
	return timestamppb.New(start)
}

func (e *Engine) launch(ctx context.Context, arn string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, busy := e.running[arn]; busy {
		return
	}
	rctx, cancel := context.WithCancel(ctx)
	e.running[arn] = cancel
	e.wg.Go(func() {
		defer func() {
			e.mu.Lock()
			delete(e.running, arn)
			e.mu.Unlock()
			cancel()
		}()
		e.drive(rctx, arn)
	})
}

// drive runs the steps of the rotation in progress on arn from the step
// its record names, recording each outcome, until it completes, fails
// (the next attempt waits for its backoff) or the record moves on under it.
func (e *Engine) drive(ctx context.Context, arn string) {
	sec, err := e.backend.Secret(arn)
	if err != nil || sec.GetRotationProgress() == nil {
		return
	}
	p := sec.GetRotationProgress()
	token, step, testOnly := p.GetToken(), p.GetStep(), p.GetTestOnly()
	fnARN := p.GetFunctionArn()
	if fnARN == "" {
		fnARN = sec.GetRotationLambdaArn()
	}
	log := e.log.With("arn", arn, "token", token, "function", fnARN)
	fn, ferr := e.resolve(ctx, fnARN)
	for {
		if ctx.Err() != nil || !e.backend.IsLeader() {
			return
		}
		started := e.cfg.Now()
		var stepErr error
		switch {
		case ferr != nil:
			stepErr = ferr
		case testOnly:
			stepErr = e.testOnly(ctx, fn, arn, token)
		default:
			stepErr = e.invoke(ctx, fn, Event{Step: Step(step), SecretID: arn, ClientRequestToken: token})
		}
		if ctx.Err() != nil {
			// Leadership ended or the node stops: whoever leads next runs
			// this step again from the record.
			return
		}
		rec := &raftv1.RecordRotationStep{Arn: arn, Token: token, Step: step}
		if stepErr != nil {
			backoff := e.backoff(p.GetAttempts() + 1)
			rec.Error = truncate(stepErr.Error(), 2*maxErrorMessage) // it lives in the secret's record
			rec.NextAttempt = timestamppb.New(e.cfg.Now().Add(backoff))
			log.Warn("rotation step failed", "step", step, "attempt", p.GetAttempts()+1, "retry_in", backoff, "err", stepErr)
			e.stepFailed(step)
		} else {
			log.Info("rotation step done", "step", step, "took", e.cfg.Now().Sub(started))
		}
		res, err := e.backend.Propose(ctx, &raftv1.Command{Op: &raftv1.Command_RecordRotationStep{RecordRotationStep: rec}})
		if err != nil {
			log.Warn("rotation step not recorded; the next tick retries it", "step", step, "err", err)
			return
		}
		if res.VersionID == "" || stepErr != nil {
			return
		}
		// Read back what Apply made of it: the next step, done, or a
		// failure it found (finishSecret that did not move AWSCURRENT).
		sec, err = e.backend.Secret(arn)
		if err != nil {
			return
		}
		np := sec.GetRotationProgress()
		if np == nil || np.GetToken() != token {
			if !testOnly {
				log.Info("rotation complete")
			}
			e.completed(p)
			return
		}
		if np.GetAttempts() != p.GetAttempts() {
			log.Warn("rotation step failed", "step", step, "err", np.GetLastError())
			e.stepFailed(step)
			return
		}
		p, step = np, np.GetStep()
	}
}

func (e *Engine) invoke(ctx context.Context, fn Function, ev Event) error {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.StepTimeout)
	defer cancel()
	err := fn.Invoke(ctx, ev)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%s timed out after %s: %w", ev.Step, e.cfg.StepTimeout, err)
	}
	return err
}

// testOnly is a RotateImmediately=false run, as AWS does it: put the
// current value under AWSPENDING with the token and run testSecret; the
// record of the pass takes AWSPENDING off again.
//
// The copy is made once per token. A retry finds the token's version
// already holding a value and tests that copy as it is: a version's value
// never changes, so copying an AWSCURRENT that has moved since (a manual
// PutSecretValue while the test waited for its retry) under the same token
// would be refused as "token in use" on every attempt.
func (e *Engine) testOnly(ctx context.Context, fn Function, arn, token string) error {
	_, err := e.api.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: arn, VersionId: token})
	switch {
	case err == nil:
		// Copied by an earlier attempt (or the token is AWSCURRENT's own
		// version): nothing to put.
	case isNotFound(err):
		if err := e.copyCurrent(ctx, arn, token); err != nil {
			return err
		}
	default:
		return fmt.Errorf("read the AWSPENDING test version: %w", err)
	}
	return e.invoke(ctx, fn, Event{Step: StepTestSecret, SecretID: arn, ClientRequestToken: token}) // Apply takes AWSPENDING off again when it records the pass
}

// copyCurrent puts AWSCURRENT's value under AWSPENDING as version token.
func (e *Engine) copyCurrent(ctx context.Context, arn, token string) error {
	cur, err := e.api.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: arn, VersionStage: storage.StageCurrent})
	if err != nil {
		return fmt.Errorf("read AWSCURRENT for the test: %w", err)
	}
	if cur.GetVersionId() == token {
		return nil
	}
	put := &cofferv1.PutSecretValueRequest{SecretId: arn, ClientRequestToken: token, VersionStages: []string{storage.StagePending}}
	if cur.SecretString != nil {
		put.SecretString = cur.SecretString
	} else {
		put.SecretBinary = cur.SecretBinary
	}
	if _, err := e.api.PutSecretValue(ctx, put); err != nil {
		return fmt.Errorf("create the AWSPENDING test version: %w", err)
	}
	return nil
}

// isNotFound reports whether a SecretsAPI call failed because the version
// asked for has no value, from the in-process service (storage errors) or
// a gRPC client (status code).
func isNotFound(err error) bool {
	return errors.Is(err, storage.ErrVersionNotFound) || errors.Is(err, storage.ErrStageNotFound) || status.Code(err) == codes.NotFound
}

func (e *Engine) backoff(attempt uint32) time.Duration {
	d := e.cfg.RetryBase
	for i := uint32(1); i < attempt && d < e.cfg.RetryMax; i++ {
		d *= 2
	}
	return min(d, e.cfg.RetryMax)
}
