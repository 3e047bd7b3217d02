package rotators

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/rotation"
	"github.com/cofferhq/coffer/storage"
)

// The names the built-in rotators are referenced by, as a secret's
// RotationLambdaARN.
const (
	PostgreSQLSingleUser = "coffer:rotator/postgresql-single-user"
	PostgreSQLMultiUser  = "coffer:rotator/postgresql-multi-user"
	MySQLSingleUser      = "coffer:rotator/mysql-single-user"
	MySQLMultiUser       = "coffer:rotator/mysql-multi-user"
)

// The staging labels the protocol moves.
const (
	stageCurrent  = "AWSCURRENT"
	stagePending  = "AWSPENDING"
	stagePrevious = "AWSPREVIOUS"
)

// ExcludeCharacters are the characters generated passwords never contain:
// the AWS templates' default, which keeps passwords safe inside connection
// URLs and quoted SQL literals.
const ExcludeCharacters = `:/@"'\`

// cloneSuffix marks the second user of the alternating-users strategy.
const cloneSuffix = "_clone"

// Timeouts for the database side of a step. A step that cannot reach its
// database fails quickly and is retried by the engine, rather than holding
// the rotation for as long as the engine's context allows.
const (
	connectTimeout   = 5 * time.Second
	statementTimeout = 15 * time.Second
)

// The failures a step reports. Test for them with errors.Is; the text
// around them names the secret and the cause, never a secret value.
var (
	// ErrMalformedSecret: a secret value is not the RDS JSON this rotator
	// needs (missing fields, wrong engine, bad port).
	ErrMalformedSecret = errors.New("secret value is not usable by this rotator")
	// ErrNotPending: the step's token does not name the AWSPENDING version.
	ErrNotPending = errors.New("token is not the pending version")
	// ErrMismatch: the pending secret points at another host or user than
	// the current one, which a rotation never does.
	ErrMismatch = errors.New("pending secret does not match the current secret")
	// ErrLogin: the database refused every set of credentials the step
	// could try.
	ErrLogin = errors.New("cannot log in to the database")
	// ErrDatabase: the database refused a statement the step needed.
	ErrDatabase = errors.New("database statement failed")
	// ErrUnknownStep: the event names no step of the protocol.
	ErrUnknownStep = errors.New("unknown rotation step")
	// ErrNotClone: the alternating strategy refused to set the password
	// of the user the pending version names, because that user is not
	// the other half of a pair this rotator made (see DESIGN.md, "The
	// alternating pair"). The master's credentials are never used on a
	// user that only the secret's author says is a clone.
	ErrNotClone = errors.New("refused to set the password of a user that is not the other half of the alternating pair")
)

var kinds = []error{ErrMalformedSecret, ErrNotPending, ErrMismatch, ErrLogin, ErrDatabase, ErrUnknownStep, ErrNotClone,
	context.Canceled, context.DeadlineExceeded}

// Builtin returns the four built-in rotators, keyed by the name a secret's
// RotationLambdaARN gives, each calling back into api.
func Builtin(api rotation.SecretsAPI) map[string]rotation.Function {
	return map[string]rotation.Function{
		PostgreSQLSingleUser: &Rotator{api: api, db: postgres{}, multiUser: false},
		PostgreSQLMultiUser:  &Rotator{api: api, db: postgres{}, multiUser: true},
		MySQLSingleUser:      &Rotator{api: api, db: mysqlDB{}, multiUser: false},
		MySQLMultiUser:       &Rotator{api: api, db: mysqlDB{}, multiUser: true},
	}
}

// Rotator is one built-in rotation function: a database and a strategy.
type Rotator struct {
	api       rotation.SecretsAPI
	db        database
	multiUser bool
}

var _ rotation.Function = (*Rotator)(nil)

// database is what a rotator needs from one database product.
type database interface {
	// engines lists the values of the secret's "engine" field it accepts.
	engines() []string
	defaultPort() int
	maxUsername() int
	// connect logs in with s's credentials. A refused login wraps ErrLogin.
	connect(ctx context.Context, s *dbSecret) (session, error)
}

// session is one logged-in connection.
type session interface {
	// ping runs a trivial query.
	ping(ctx context.Context) error
	// setOwnPassword changes the logged-in user's password.
	setOwnPassword(ctx context.Context, user, password string) error
	// setAlternate, run as the master user, gives alt (the user of the
	// pair that current is not) the password, creating it with current's
	// rights when alt is current's _clone and does not exist yet. Before
	// changing an existing user it checks, on the database, that alt is
	// the other half of a pair the rotator made with current, and refuses
	// with ErrNotClone otherwise: the secret's author chose both names, and
	// the master's credentials must not change any other user's password.
	setAlternate(ctx context.Context, current, alt, password string) error
	close()
}

// pairOf names the two users of the alternating pair formed by the
// current user and the alternate one altUsername gave: base is the one
// without the suffix. altIsClone is true when alt is current's _clone,
// false when the rotation flips back from the clone to its base user.
func pairOf(current, alt string) (base, clone string, altIsClone bool) {
	if alt == current+cloneSuffix {
		return current, alt, true
	}
	return alt, current, false
}

// Invoke runs one step for ev.SecretID. Like the AWS templates it first
// checks that the token names the pending version, and does nothing when it
// is already AWSCURRENT, so every step can be run again harmlessly.
//
// Unlike the templates it does not require RotationEnabled: a built-in
// rotator can only be invoked by Coffer's own engine, which decides when a
// rotation runs (RotateImmediately=false runs testSecret alone).
func (r *Rotator) Invoke(ctx context.Context, ev rotation.Event) error {
	inv := &invocation{Rotator: r, ev: ev}
	err := inv.run(ctx)
	if err == nil {
		return nil
	}
	return inv.scrub(err)
}

// invocation is one step's run; it remembers every password it read so the
// error it returns can be scrubbed of them.
type invocation struct {
	*Rotator
	ev        rotation.Event
	arn       string
	passwords []string
}

func (inv *invocation) logger() *slog.Logger {
	return slog.Default().With("secret_arn", inv.arn, "step", string(inv.ev.Step), "version_id", inv.ev.ClientRequestToken)
}

func (inv *invocation) run(ctx context.Context) error {
	desc, err := inv.api.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: inv.ev.SecretID})
	if err != nil {
		return fmt.Errorf("describe secret: %w", err)
	}
	inv.arn = desc.GetArn()
	token := inv.ev.ClientRequestToken
	stages, known := desc.GetVersionIdsToStages()[token]
	switch {
	case known && slices.Contains(stages.GetStages(), stageCurrent):
		inv.logger().Debug("version is already AWSCURRENT; nothing to do")
		return nil
	case known && !slices.Contains(stages.GetStages(), stagePending):
		return fmt.Errorf("%w: version %s of secret %s is not AWSPENDING", ErrNotPending, token, inv.arn)
	case !known && inv.ev.Step != rotation.StepCreateSecret:
		// createSecret may make the version; every later step needs it.
		return fmt.Errorf("%w: secret %s has no version %s", ErrNotPending, inv.arn, token)
	}
	switch inv.ev.Step {
	case rotation.StepCreateSecret:
		return inv.createSecret(ctx, known)
	case rotation.StepSetSecret:
		return inv.setSecret(ctx)
	case rotation.StepTestSecret:
		return inv.testSecret(ctx)
	case rotation.StepFinishSecret:
		return inv.finishSecret(ctx, desc)
	}
	return fmt.Errorf("%w: %q", ErrUnknownStep, inv.ev.Step)
}

// createSecret stores a new AWSPENDING version with a fresh password (and,
// for alternating users, the other user's name), unless one exists.
func (inv *invocation) createSecret(ctx context.Context, tokenKnown bool) error {
	current, err := inv.secret(ctx, inv.ev.SecretID, "", stageCurrent)
	if err != nil {
		return err
	}
	if tokenKnown {
		// The version may exist without a value: the engine records it
		// before the first step, as AWS does.
		if _, err := inv.secret(ctx, inv.ev.SecretID, inv.ev.ClientRequestToken, stagePending); err == nil {
			inv.logger().Debug("pending version already has a value")
			return nil
		} else if !isNotFound(err) {
			return err
		}
	}
	pending := current.clone()
	if inv.multiUser {
		alt, err := altUsername(current.Username, inv.db.maxUsername())
		if err != nil {
			return err
		}
		pending.setUsername(alt)
	}
	pw, err := inv.api.GetRandomPassword(ctx, &cofferv1.GetRandomPasswordRequest{ExcludeCharacters: ExcludeCharacters})
	if err != nil {
		return fmt.Errorf("generate password: %w", err)
	}
	pending.setPassword(pw.GetRandomPassword())
	inv.passwords = append(inv.passwords, pending.Password)
	value, err := pending.marshal()
	if err != nil {
		return err
	}
	if _, err := inv.api.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{
		SecretId: inv.ev.SecretID, ClientRequestToken: inv.ev.ClientRequestToken,
		SecretString: &value, VersionStages: []string{stagePending},
	}); err != nil {
		return fmt.Errorf("store pending version: %w", err)
	}
	inv.logger().Debug("stored pending version")
	return nil
}

func (inv *invocation) setSecret(ctx context.Context) error {
	pending, err := inv.secret(ctx, inv.ev.SecretID, inv.ev.ClientRequestToken, stagePending)
	if err != nil {
		return err
	}
	current, err := inv.secret(ctx, inv.ev.SecretID, "", stageCurrent)
	if err != nil {
		return err
	}
	if inv.multiUser {
		return inv.setAlternating(ctx, current, pending)
	}
	return inv.setSingle(ctx, current, pending)
}

// setSingle changes the user's own password, logged in with the pending,
// current or previous credentials, whichever still work.
func (inv *invocation) setSingle(ctx context.Context, current, pending *dbSecret) error {
	if current.Username != pending.Username {
		return fmt.Errorf("%w: the pending version names another user", ErrMismatch)
	}
	if !current.sameServer(pending) {
		return fmt.Errorf("%w: the pending version names another host or port", ErrMismatch)
	}
	if sess, err := inv.db.connect(ctx, pending); err == nil {
		sess.close()
		inv.logger().Debug("pending password is already set")
		return nil
	} else if !errors.Is(err, ErrLogin) {
		return err
	}
	sess, err := inv.db.connect(ctx, current)
	if errors.Is(err, ErrLogin) {
		// A setSecret that ran before but whose finishSecret never did
		// leaves the database on a password only an earlier version knows.
		var previous *dbSecret
		previous, err = inv.previous(ctx, current)
		if err != nil {
			return err
		}
		if previous == nil {
			return fmt.Errorf("%w as %s with the pending or current password", ErrLogin, current.Username)
		}
		sess, err = inv.db.connect(ctx, previous)
		if errors.Is(err, ErrLogin) {
			return fmt.Errorf("%w as %s with the pending, current or previous password", ErrLogin, current.Username)
		}
	}
	if err != nil {
		return err
	}
	defer sess.close()
	if err := sess.setOwnPassword(ctx, pending.Username, pending.Password); err != nil {
		return err
	}
	inv.logger().Debug("set the pending password", "user", pending.Username)
	return nil
}

// previous returns the AWSPREVIOUS version when there is one that names the
// same user on the same server, or nil.
func (inv *invocation) previous(ctx context.Context, current *dbSecret) (*dbSecret, error) {
	prev, err := inv.secret(ctx, inv.ev.SecretID, "", stagePrevious)
	if isNotFound(err) || errors.Is(err, ErrMalformedSecret) {
		// Only a fallback: an unusable old version is as good as none.
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if prev.Username != current.Username || !prev.sameServer(current) {
		return nil, nil
	}
	return prev, nil
}

// setAlternating makes the pending user (the one not in AWSCURRENT) exist
// with the pending password, working as the master user named by masterarn.
// The current user is never touched, so clients holding AWSCURRENT keep
// working.
//
// The master secret is the system's, and the secret being rotated is its
// author's: the author chose the user names, the masterarn and the
// current password. So before the master's credentials are used, the
// current credentials must log in (the author knows that user), the master
// secret must name the same server, and the database itself must show that
// the pending user is the current user's alternate (setAlternate);
// otherwise a secret naming "postgres_clone" would have the master reset
// the password of "postgres".
func (inv *invocation) setAlternating(ctx context.Context, current, pending *dbSecret) error {
	if sess, err := inv.db.connect(ctx, pending); err == nil {
		sess.close()
		inv.logger().Debug("pending user already has the pending password")
		return nil
	} else if !errors.Is(err, ErrLogin) {
		return err
	}
	alt, err := altUsername(current.Username, inv.db.maxUsername())
	if err != nil {
		return err
	}
	if pending.Username != alt {
		return fmt.Errorf("%w: the pending version names user %s, expected %s", ErrMismatch, pending.Username, alt)
	}
	if !current.sameServer(pending) {
		return fmt.Errorf("%w: the pending version names another host or port", ErrMismatch)
	}
	// As the templates do: refuse to touch the database when the current
	// credentials are already broken, since finishing would break clients.
	sess, err := inv.db.connect(ctx, current)
	if err != nil {
		return fmt.Errorf("check current credentials: %w", err)
	}
	sess.close()
	if current.MasterARN == "" {
		return fmt.Errorf("%w: masterarn is missing", ErrMalformedSecret)
	}
	master, err := inv.secret(ctx, current.MasterARN, "", stageCurrent)
	if err != nil {
		return fmt.Errorf("master secret: %w", err)
	}
	// The master's credentials are only ever sent to the server the
	// master secret names, and that must be the rotated user's server.
	if !master.sameServer(current) {
		return fmt.Errorf("%w: the master secret names another host or port", ErrMismatch)
	}
	msess, err := inv.db.connect(ctx, master)
	if err != nil {
		return fmt.Errorf("log in as the master user: %w", err)
	}
	defer msess.close()
	if err := msess.setAlternate(ctx, current.Username, pending.Username, pending.Password); err != nil {
		return err
	}
	inv.logger().Debug("set the pending user's password", "user", pending.Username)
	return nil
}

// testSecret logs in with the pending credentials and runs a query.
func (inv *invocation) testSecret(ctx context.Context) error {
	pending, err := inv.secret(ctx, inv.ev.SecretID, inv.ev.ClientRequestToken, stagePending)
	if err != nil {
		return err
	}
	sess, err := inv.db.connect(ctx, pending)
	if err != nil {
		return fmt.Errorf("log in with the pending version: %w", err)
	}
	defer sess.close()
	return sess.ping(ctx)
}

// finishSecret moves AWSCURRENT to the pending version; the service puts
// AWSPREVIOUS on the version it leaves.
func (inv *invocation) finishSecret(ctx context.Context, desc *cofferv1.DescribeSecretResponse) error {
	var from string
	for id, st := range desc.GetVersionIdsToStages() {
		if slices.Contains(st.GetStages(), stageCurrent) {
			from = id
			break
		}
	}
	if _, err := inv.api.UpdateSecretVersionStage(ctx, &cofferv1.UpdateSecretVersionStageRequest{
		SecretId: inv.ev.SecretID, VersionStage: stageCurrent,
		MoveToVersionId: inv.ev.ClientRequestToken, RemoveFromVersionId: from,
	}); err != nil {
		return fmt.Errorf("move AWSCURRENT: %w", err)
	}
	inv.logger().Debug("moved AWSCURRENT", "from_version_id", from)
	return nil
}

// secret reads and parses one version of a secret, remembering its
// password for scrubbing.
func (inv *invocation) secret(ctx context.Context, id, versionID, stage string) (*dbSecret, error) {
	out, err := inv.api.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: id, VersionId: versionID, VersionStage: stage})
	if err != nil {
		return nil, fmt.Errorf("read %s of %s: %w", stage, id, err)
	}
	if out.SecretString == nil {
		return nil, fmt.Errorf("%w: %s of %s has no SecretString", ErrMalformedSecret, stage, id)
	}
	s, err := parseSecret(out.GetSecretString(), inv.db)
	if s != nil && s.Password != "" {
		inv.passwords = append(inv.passwords, s.Password)
	}
	if err != nil {
		return nil, fmt.Errorf("%s of %s: %w", stage, id, err)
	}
	return s, nil
}

// altUsername flips between user and user_clone.
func altUsername(user string, max int) (string, error) {
	if base, ok := strings.CutSuffix(user, cloneSuffix); ok && base != "" {
		return base, nil
	}
	alt := user + cloneSuffix
	if len(alt) > max {
		return "", fmt.Errorf("%w: user name %s with %s appended would exceed %d characters", ErrMalformedSecret, user, cloneSuffix, max)
	}
	return alt, nil
}

// isNotFound reports whether a SecretsAPI call failed because the version
// or label asked for does not exist, whether the API is the in-process
// service (storage errors) or a gRPC client (status codes).
func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, storage.ErrVersionNotFound) || errors.Is(err, storage.ErrStageNotFound) {
		return true
	}
	return status.Code(err) == codes.NotFound
}

// stepError is what Invoke returns: the failure's text with every password
// the step handled replaced, wrapping only the kind of failure.
type stepError struct {
	kind error
	msg  string
}

func (e *stepError) Error() string { return e.msg }
func (e *stepError) Unwrap() error { return e.kind }

const redacted = "[REDACTED]"

func (inv *invocation) scrub(err error) error {
	msg := fmt.Sprintf("%s %s of %s: %s", inv.ev.Step, inv.ev.ClientRequestToken, inv.ev.SecretID, err.Error())
	pws := slices.Clone(inv.passwords)
	// Longest first, so a password containing another is replaced whole.
	slices.SortFunc(pws, func(a, b string) int { return len(b) - len(a) })
	for _, pw := range pws {
		if pw != "" {
			msg = strings.ReplaceAll(msg, pw, redacted)
		}
	}
	var kind error
	for _, k := range kinds {
		if errors.Is(err, k) {
			kind = k
			break
		}
	}
	return &stepError{kind: kind, msg: msg}
}
