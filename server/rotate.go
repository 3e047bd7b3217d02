package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/rotation"
	"github.com/cofferhq/coffer/storage"
)

const maxLambdaARNLength = 2048

var (
	functionNamePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	durationModel       = regexp.MustCompile(`^[0-9h]{2,3}$`)
	scheduleModel       = regexp.MustCompile(`^[0-9A-Za-z()#?*\-/, ]{1,256}$`)
)

// msgCannotInvoke is AWS's answer for a rotation function it cannot call.
const msgCannotInvoke = "Secrets Manager cannot invoke the specified Lambda function. Ensure that the function policy grants access to the principal secretsmanager.amazonaws.com."

// ErrUnknownFunction means no built-in rotator or registered function has
// the name a RotationLambdaARN gives.
var ErrUnknownFunction = errors.New("unknown rotation function")

// Now is the service's clock: every command's time, and what rotation
// schedules are read against.
func (s *Service) Now() time.Time { return s.now() }

// SetRotators installs the built-in rotators, keyed by the name a
// RotationLambdaARN uses (coffer:rotator/...). Call it before the node
// serves requests.
func (s *Service) SetRotators(m map[string]rotation.Function) { s.rotators = m }

// RotateSecret implements the AWS operation: store the function and
// schedule, turn rotation on, and start a rotation (or, with
// RotateImmediately=false, a test of the function) that the region
// leader's engine runs.
func (s *Service) RotateSecret(ctx context.Context, req *cofferv1.RotateSecretRequest) (*cofferv1.RotateSecretResponse, error) {
	if e := firstErr(secretIDConstraints(req.GetSecretId()), validateToken("clientRequestToken", req.GetClientRequestToken()),
		checkLength("rotationLambdaARN", req.GetRotationLambdaArn(), 0, maxLambdaARNLength), rulesConstraints(req.GetRotationRules())); e != nil {
		return nil, e
	}
	// AWS answers a missing token here with InvalidParameterException.
	if e := firstErr(requireClientToken(ctx, TypeInvalidParameter, req.GetClientRequestToken(), true), secretIDShape(req.GetSecretId()),
		rulesSchedule(req.GetRotationRules())); e != nil {
		return nil, e
	}
	sec, err := s.liveSecret(ctx, req.GetSecretId())
	if err != nil {
		return nil, err
	}
	fnARN := ""
	if req.GetRotationLambdaArn() != "" {
		if fnARN, err = s.canonicalFunction(ctx, req.GetRotationLambdaArn()); err != nil {
			return nil, err
		}
	} else if sec.GetRotationLambdaArn() == "" {
		return nil, apiErr(TypeInvalidRequest, "No Lambda rotation function ARN is associated with this secret.")
	}
	token := req.GetClientRequestToken()
	if token == "" {
		token = uuid.NewString()
	}
	res, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_ConfigureRotation{ConfigureRotation: &raftv1.ConfigureRotation{
		Arn: sec.GetArn(), RotationLambdaArn: fnARN, RotationRules: req.GetRotationRules(), Token: token,
		TestOnly: req.RotateImmediately != nil && !req.GetRotateImmediately(),
	}}})
	if err != nil {
		return nil, err
	}
	s.log.Info("rotation requested", "arn", res.ARN, "token", res.VersionID, "function", orStored(fnARN, sec.GetRotationLambdaArn()),
		"test_only", req.RotateImmediately != nil && !req.GetRotateImmediately())
	return &cofferv1.RotateSecretResponse{Arn: res.ARN, Name: res.Name, VersionId: res.VersionID}, nil
}

func orStored(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// rulesConstraints checks RotationRules against the AWS model.
func rulesConstraints(r *cofferv1.RotationRules) *APIError {
	if r == nil {
		return nil
	}
	if r.AutomaticallyAfterDays != nil {
		switch d := r.GetAutomaticallyAfterDays(); {
		case d < rotation.MinDays:
			return validationValueErr("rotationRules.automaticallyAfterDays", d, "Member must have value greater than or equal to 1")
		case d > rotation.MaxDays:
			return validationValueErr("rotationRules.automaticallyAfterDays", d, "Member must have value less than or equal to 1000")
		}
	}
	if d := r.GetDuration(); d != "" && !durationModel.MatchString(d) {
		return validationErr("rotationRules.duration", "Member must satisfy regular expression pattern: [0-9h]+")
	}
	if e := r.GetScheduleExpression(); e != "" && !scheduleModel.MatchString(e) {
		return validationErr("rotationRules.scheduleExpression", "Member must satisfy regular expression pattern: [0-9A-Za-z\\(\\)#\\?\\*\\-\\/, ]+")
	}
	return nil
}

// rulesSchedule checks what the model cannot: that the rules make a
// schedule (the operation's own check, after the model's).
func rulesSchedule(r *cofferv1.RotationRules) *APIError {
	if r == nil {
		return nil
	}
	if _, err := rotation.ParseRules(r); err != nil {
		msg := err.Error()
		if errors.Is(err, rotation.ErrInvalidRules) {
			msg = msg[len(rotation.ErrInvalidRules.Error())+2:]
		}
		return apiErr(TypeInvalidParameter, "%s", msg)
	}
	return nil
}

// canonicalFunction turns what a caller wrote in RotationLambdaARN into the
// name stored: a built-in rotator's name, or a registered function's ARN. A
// function this node does not know yet (registered a moment ago through
// another node) is looked up again after a read barrier.
func (s *Service) canonicalFunction(ctx context.Context, ref string) (string, error) {
	if _, ok := s.rotators[ref]; ok {
		return ref, nil
	}
	f, err := s.state.RotationFunction(ref)
	if err == nil && f == nil {
		if _, berr := s.rep.ReadBarrier(ctx); berr == nil {
			f, err = s.state.RotationFunction(ref)
		}
	}
	if err != nil {
		return "", err
	}
	if f == nil {
		return "", apiErr(TypeAccessDeniedException, "%s", msgCannotInvoke)
	}
	return f.GetArn(), nil
}

// CancelRotateSecret implements the AWS operation: rotation off, the
// rotation in progress abandoned. Its AWSPENDING version is left for the
// caller to inspect and clean up, as AWS leaves it; VersionId names it.
func (s *Service) CancelRotateSecret(ctx context.Context, req *cofferv1.CancelRotateSecretRequest) (*cofferv1.CancelRotateSecretResponse, error) {
	if e := validateSecretID(req.GetSecretId()); e != nil {
		return nil, e
	}
	sec, err := s.liveSecret(ctx, req.GetSecretId())
	if err != nil {
		return nil, err
	}
	if sec.GetRotationLambdaArn() == "" && !sec.GetRotationEnabled() && sec.GetRotationProgress() == nil {
		// A secret that never had rotation configured: AWS's answer, in
		// the words of its CancelRotateSecret reference.
		return nil, apiErr(TypeInvalidRequest, "You tried to enable rotation on a secret that doesn't already have a Lambda function ARN configured and you didn't include such an ARN as a parameter in this call.")
	}
	res, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_CancelRotation{CancelRotation: &raftv1.CancelRotation{Arn: sec.GetArn()}}})
	if err != nil {
		return nil, err
	}
	s.log.Info("rotation cancelled", "arn", res.ARN, "abandoned_version", res.VersionID)
	return &cofferv1.CancelRotateSecretResponse{Arn: res.ARN, Name: res.Name, VersionId: res.VersionID}, nil
}

// rotationStatus renders the rotation in progress for DescribeSecret.
func rotationStatus(sec *storagev1.Secret) *cofferv1.RotationStatus {
	p := sec.GetRotationProgress()
	if p == nil {
		return nil
	}
	return &cofferv1.RotationStatus{
		ClientRequestToken: p.GetToken(), Step: p.GetStep(), Attempts: p.GetAttempts(),
		LastError: p.GetLastError(), LastErrorStep: p.GetLastErrorStep(), LastErrorDate: p.GetLastErrorDate(),
		StartedDate: p.GetStartedDate(), NextAttemptDate: p.GetNextAttemptDate(), TestOnly: p.GetTestOnly(),
	}
}

// ResolveRotationFunction finds the function a stored RotationLambdaARN
// names: a built-in rotator, or a registered HTTP function with its
// signing secret unsealed.
func (s *Service) ResolveRotationFunction(_ context.Context, ref string) (rotation.Function, error) {
	if fn, ok := s.rotators[ref]; ok {
		return fn, nil
	}
	f, err := s.state.RotationFunction(ref)
	if err != nil {
		return nil, err
	}
	if f == nil {
		return nil, fmt.Errorf("%w: %s is neither a built-in rotator nor a registered function", ErrUnknownFunction, ref)
	}
	hf := &rotation.HTTPFunction{URL: f.GetUrl(), Name: f.GetName(), InsecureHTTP: f.GetInsecureHttp(), Client: s.httpClient}
	if sealed := f.GetSealedSecret(); sealed != nil {
		kr, err := s.keys()
		if err != nil {
			return nil, err
		}
		if hf.Secret, err = kr.Unseal(sealed, functionAAD(f.GetName()), f.GetName()); err != nil {
			return nil, fmt.Errorf("unseal the signing secret of rotation function %s: %w", f.GetName(), err)
		}
	}
	return hf, nil
}

func functionAAD(name string) string { return "coffer:rotation-function:" + name }

// RotationBackend is the engine's view of this service: leadership, local
// state and the region's log.
func (s *Service) RotationBackend() rotation.Backend { return rotationBackend{s} }

type rotationBackend struct{ s *Service }

func (b rotationBackend) IsLeader() bool { return b.s.rep.IsLeader() }

func (b rotationBackend) Secret(arn string) (*storagev1.Secret, error) { return b.s.state.Secret(arn) }

func (b rotationBackend) Secrets(fn func(*storagev1.Secret) bool) error { return b.s.state.Secrets(fn) }

func (b rotationBackend) Propose(ctx context.Context, cmd *raftv1.Command) (*storage.Result, error) {
	return b.s.propose(ctx, cmd)
}

// Rotation implements the RotationService: registering the HTTP rotation
// functions a RotationLambdaARN can name.
type Rotation struct {
	cofferv1.UnimplementedRotationServiceServer
	svc *Service
}

var _ cofferv1.RotationServiceServer = (*Rotation)(nil)

// NewRotation builds the RotationService over svc.
func NewRotation(svc *Service) *Rotation { return &Rotation{svc: svc} }

func (r *Rotation) functionARN(name string) string {
	c := r.svc.cfg
	return fmt.Sprintf("arn:%s:lambda:%s:%s:function:%s", c.Partition, c.Region, c.AccountID, name)
}

// RegisterFunction implements the RotationService operation. A function
// must have a shared secret, which signs every request (with the time and
// the function's name, so a captured request cannot be replayed later or
// sent to another function), and an https URL, unless it is registered
// with insecure_http for a URL on this host (localhost or a loopback
// address) — plain HTTP between hosts would show every event to the
// network.
func (r *Rotation) RegisterFunction(ctx context.Context, req *cofferv1.RegisterFunctionRequest) (*cofferv1.RegisterFunctionResponse, error) {
	if !functionNamePattern.MatchString(req.GetName()) {
		return nil, apiErr(TypeValidation, "Invalid function name. Use 1–64 characters of A-Za-z0-9_-.")
	}
	u, err := url.Parse(req.GetUrl())
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, apiErr(TypeInvalidParameter, "The function URL must be an absolute https URL.")
	}
	if e := checkLength("sharedSecret", req.GetSharedSecret(), 0, 4096); e != nil {
		return nil, e
	}
	switch n := len(req.GetSharedSecret()); {
	case n == 0:
		return nil, apiErr(TypeInvalidParameter, "A shared secret is required: every request to the function is signed with it. Use a random one, such as 32 bytes from openssl rand -hex 32.")
	case n < rotation.MinSharedSecret:
		return nil, apiErr(TypeInvalidParameter, "The shared secret must be at least %d bytes; use a random one, such as 32 bytes from openssl rand -hex 32.", rotation.MinSharedSecret)
	}
	switch {
	case u.Scheme == "https" && req.GetInsecureHttp():
		return nil, apiErr(TypeInvalidParameter, "InsecureHttp applies only to an http:// URL; an https URL needs no exception.")
	case u.Scheme == "http" && !req.GetInsecureHttp():
		return nil, apiErr(TypeInvalidParameter, "The function URL must be https. Plain http is allowed only for a function on this host (localhost or a loopback address), registered with InsecureHttp (coffer rotation register-function --insecure-http).")
	case u.Scheme == "http" && !rotation.LoopbackURL(u):
		return nil, apiErr(TypeInvalidParameter, "InsecureHttp is allowed only for a URL whose host is localhost or a loopback address, not %s.", u.Hostname())
	}
	f := &storagev1.RotationFunction{Name: req.GetName(), Arn: r.functionARN(req.GetName()), Url: u.String(),
		InsecureHttp: req.GetInsecureHttp(), CreatedDate: timestamppb.New(r.svc.now())}
	kr, err := r.svc.keys()
	if err != nil {
		return nil, err
	}
	if f.SealedSecret, err = kr.Seal(kr.DefaultKeyID(), "rotation-function:"+f.GetName(), functionAAD(f.GetName()), f.GetName(),
		storagev1.ValueKind_VALUE_KIND_STRING, []byte(req.GetSharedSecret())); err != nil {
		return nil, err
	}
	if _, err := r.svc.propose(ctx, &raftv1.Command{Op: &raftv1.Command_RegisterRotationFunction{RegisterRotationFunction: &raftv1.RegisterRotationFunction{Function: f}}}); err != nil {
		return nil, err
	}
	r.svc.log.Info("rotation function registered", "function", f.GetArn(), "insecure_http", f.GetInsecureHttp())
	return &cofferv1.RegisterFunctionResponse{Function: functionInfo(f)}, nil
}

func functionInfo(f *storagev1.RotationFunction) *cofferv1.RotationFunctionInfo {
	return &cofferv1.RotationFunctionInfo{Name: f.GetName(), Arn: f.GetArn(), Url: f.GetUrl(), Signed: f.GetSealedSecret() != nil,
		InsecureHttp: f.GetInsecureHttp(), CreatedDate: f.GetCreatedDate()}
}

// ListFunctions implements the RotationService operation.
func (r *Rotation) ListFunctions(ctx context.Context, _ *cofferv1.ListFunctionsRequest) (*cofferv1.ListFunctionsResponse, error) {
	if err := r.svc.readPoint(ctx); err != nil {
		return nil, err
	}
	resp := &cofferv1.ListFunctionsResponse{}
	var builtins []string
	for name := range r.svc.rotators {
		builtins = append(builtins, name)
	}
	sort.Strings(builtins)
	for _, name := range builtins {
		resp.Functions = append(resp.Functions, &cofferv1.RotationFunctionInfo{Name: name, Arn: name, Builtin: true})
	}
	fs, err := r.svc.state.RotationFunctions()
	if err != nil {
		return nil, err
	}
	for _, f := range fs {
		resp.Functions = append(resp.Functions, functionInfo(f))
	}
	return resp, nil
}

// DeregisterFunction implements the RotationService operation. Secrets
// that name the function keep the name; their rotations fail until it is
// registered again or they are pointed elsewhere.
func (r *Rotation) DeregisterFunction(ctx context.Context, req *cofferv1.DeregisterFunctionRequest) (*cofferv1.DeregisterFunctionResponse, error) {
	name := req.GetName()
	if f, err := r.svc.state.RotationFunction(name); err == nil && f != nil {
		name = f.GetName()
	}
	if name == "" {
		return nil, apiErr(TypeInvalidParameter, "You must provide the function's name.")
	}
	res, err := r.svc.propose(ctx, &raftv1.Command{Op: &raftv1.Command_DeregisterRotationFunction{DeregisterRotationFunction: &raftv1.DeregisterRotationFunction{Name: name}}})
	if err != nil {
		return nil, err
	}
	r.svc.log.Info("rotation function deregistered", "function", res.ARN)
	return &cofferv1.DeregisterFunctionResponse{}, nil
}

// newFunctionClient is the HTTP client rotation functions are called with;
// each step's deadline comes from its context. It never follows a
// redirect, which would carry the signed event to another URL
// (HTTPFunction enforces this for any client, too).
func newFunctionClient() *http.Client {
	return rotation.NoRedirects(&http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()})
}
