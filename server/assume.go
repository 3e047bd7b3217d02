package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/policy"
)

// sessionNamePattern is STS's RoleSessionName: 2–64 of [\w+=,.@-].
var sessionNamePattern = regexp.MustCompile(`^[\w+=,.@-]*$`)

// roleRequest is what both assume operations validate alike.
type roleRequest struct {
	arn, session string
	duration     int32
}

// validate checks the request's fields as STS does, and returns the role
// name the ARN names ("" when it names none in this account: the caller
// is then refused as for a role it may not assume).
func (i *IAM) validateRoleRequest(r roleRequest) (string, error) {
	if e := checkLength("roleArn", r.arn, 20, 2048); e != nil {
		return "", e
	}
	if e := checkLength("roleSessionName", r.session, 2, 64); e != nil {
		return "", e
	}
	if !sessionNamePattern.MatchString(r.session) {
		return "", validationErr("roleSessionName", `Member must satisfy regular expression pattern: [\w+=,.@-]*`)
	}
	if r.duration != 0 && r.duration < minRoleSession {
		return "", validationErr("durationSeconds", fmt.Sprintf("Member must have value greater than or equal to %d", minRoleSession))
	}
	if r.duration > maxRoleMaxSession {
		return "", validationErr("durationSeconds", fmt.Sprintf("Member must have value less than or equal to %d", maxRoleMaxSession))
	}
	prefix := fmt.Sprintf("arn:%s:iam::%s:role/", i.svc.cfg.Partition, i.svc.cfg.AccountID)
	name, ok := strings.CutPrefix(r.arn, prefix)
	if !ok || !principalPattern.MatchString(name) {
		if !strings.HasPrefix(r.arn, "arn:") {
			return "", apiErr(TypeValidation, "%s is invalid", truncateClaim(r.arn))
		}
		return "", nil
	}
	return name, nil
}

// sessionDuration is the lifetime a request asks for, within the role's
// maximum (and one hour when a session assumes a role: role chaining).
func sessionDuration(r roleRequest, role *storagev1.Role, chained bool) (time.Duration, error) {
	d := r.duration
	if d == 0 {
		d = DefaultRoleMaxSession
	}
	if chained && d > chainedRoleSession {
		return 0, apiErr(TypeValidation, "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.")
	}
	if d > role.GetMaxSessionDurationSeconds() {
		return 0, apiErr(TypeValidation, "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")
	}
	return time.Duration(d) * time.Second, nil
}

// AssumeRole implements STS AssumeRole. The Gate has already decided the
// caller's own half — its identity policies allow sts:AssumeRole on the
// role ARN — so this decides the role's half: its trust policy must allow
// the caller. A role that does not exist is refused as one the caller may
// not assume, as STS does, so that the answer does not tell which roles
// exist.
func (i *IAM) AssumeRole(ctx context.Context, req *cofferv1.AssumeRoleRequest) (*cofferv1.AssumeRoleResponse, error) {
	caller := IdentityFrom(ctx)
	if caller.Principal == "" {
		return nil, apiErr(TypeMissingAuthToken, "Request is missing Authentication Token")
	}
	rr := roleRequest{arn: req.GetRoleArn(), session: req.GetRoleSessionName(), duration: req.GetDurationSeconds()}
	name, err := i.validateRoleRequest(rr)
	if err != nil {
		return nil, err
	}
	callerARN := i.principalARN(caller.Principal)
	denied := apiErr(TypeAccessDeniedException, "User: %s is not authorized to perform: %s on resource: %s", callerARN, ActionAssumeRole, truncateClaim(rr.arn))
	role, err := i.role(ctx, name)
	if err != nil || role == nil {
		return nil, orDenied(err, denied)
	}
	p, _, err := i.authz.attachedPolicies(caller.Principal)
	if err != nil {
		return nil, err
	}
	keys := i.authz.keys(Caller{Principal: caller.Principal, Session: caller.Session}, p, Target{Keys: policy.Keys{}})
	keys.Set("sts:RoleSessionName", rr.session)
	// A role session (role chaining) is named in trust policies by its
	// assumed-role ARN or by its role's ARN, as in AWS.
	names := []string{callerARN}
	if r, _, ok := assumedRole(caller.Principal); ok {
		names = append(names, roleARN(i.svc.cfg, r))
	}
	trusted := false
	for _, name := range names {
		d, err := i.trusts(role, policy.Request{Principal: name, Account: i.svc.cfg.AccountID, Action: ActionAssumeRole,
			Resource: role.GetArn(), Keys: keys})
		if err != nil {
			return nil, err
		}
		if d == policy.ExplicitDeny {
			return nil, denied
		}
		trusted = trusted || d == policy.Allowed
	}
	if !trusted {
		return nil, denied
	}
	d, err := sessionDuration(rr, role, caller.Session)
	if err != nil {
		return nil, err
	}
	return i.mintRoleSession(ctx, role, rr.session, d, caller.Principal)
}

// AssumeRoleWithWebIdentity implements STS AssumeRoleWithWebIdentity: no
// signature, the OIDC ID token is the credential. The token is verified
// against the issuer's keys (webidentity.go), then the role's trust policy
// must allow the issuer — Principal {"Federated": <provider ARN>} — with
// its conditions on <issuer>:sub and <issuer>:aud, as in AWS.
func (i *IAM) AssumeRoleWithWebIdentity(ctx context.Context, req *cofferv1.AssumeRoleWithWebIdentityRequest) (*cofferv1.AssumeRoleResponse, error) {
	rr := roleRequest{arn: req.GetRoleArn(), session: req.GetRoleSessionName(), duration: req.GetDurationSeconds()}
	if e := checkLength("webIdentityToken", req.GetWebIdentityToken(), 4, 20000); e != nil {
		return nil, e
	}
	name, err := i.validateRoleRequest(rr)
	if err != nil {
		return nil, err
	}
	claims, err := i.web.verify(ctx, req.GetWebIdentityToken())
	if err != nil {
		return nil, err
	}
	denied := apiErr(TypeAccessDeniedException, "Not authorized to perform %s", ActionAssumeRoleWithWebIdentity)
	role, err := i.role(ctx, name)
	if err != nil || role == nil {
		return nil, orDenied(err, denied)
	}
	hp := claims.Issuer.hostPath()
	keys := policy.Keys{}
	now := i.svc.now().UTC()
	keys.Set("aws:CurrentTime", now.Format(time.RFC3339))
	keys.Set("aws:EpochTime", strconv.FormatInt(now.Unix(), 10))
	keys.Set(hp+":sub", claims.Subject)
	keys.Set(hp+":aud", claims.Audience)
	keys.Set("sts:RoleSessionName", rr.session)
	if d, err := i.trusts(role, policy.Request{Federated: claims.Issuer.providerARN(i.svc.cfg), Account: i.svc.cfg.AccountID,
		Action: ActionAssumeRoleWithWebIdentity, Resource: role.GetArn(), Keys: keys}); err != nil || d != policy.Allowed {
		return nil, orDenied(err, denied)
	}
	d, err := sessionDuration(rr, role, false)
	if err != nil {
		return nil, err
	}
	out, err := i.mintRoleSession(ctx, role, rr.session, d, claims.Issuer.hostPath()+":"+claims.Subject)
	if err != nil {
		return nil, err
	}
	out.SubjectFromWebIdentityToken, out.Audience, out.Provider = claims.Subject, claims.Audience, claims.Issuer.URL
	return out, nil
}

// role reads a role after the request's read point, or nil when name is
// empty or names none.
func (i *IAM) role(ctx context.Context, name string) (*storagev1.Role, error) {
	if name == "" {
		return nil, nil
	}
	if err := i.svc.readPoint(ctx); err != nil {
		return nil, err
	}
	rs, err := i.roles()
	if err != nil {
		return nil, err
	}
	return rs.Role(name)
}

// trusts is role's trust policy's decision on req.
func (i *IAM) trusts(role *storagev1.Role, req policy.Request) (policy.Decision, error) {
	d, err := i.authz.parsed(role.GetTrustPolicy())
	if err != nil {
		return policy.ImplicitDeny, err
	}
	return policy.Trusts(req, policy.Named{Name: "trust-policy", Doc: d}).Decision, nil
}

// mintRoleSession commits temporary credentials whose principal is the
// assumed-role ARN. They are revoked when the role is deleted, and expire
// on their own; by, the one who assumed the role, is only logged.
func (i *IAM) mintRoleSession(ctx context.Context, role *storagev1.Role, session string, d time.Duration, by string) (*cofferv1.AssumeRoleResponse, error) {
	id, secret, err := NewAccessKey()
	if err != nil {
		return nil, err
	}
	id = sessionKeyPrefix + id[len(sessionKeyPrefix):]
	var raw [48]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, fmt.Errorf("session token: %w", err)
	}
	token := base64.StdEncoding.EncodeToString(raw[:])
	arn := assumedRoleARN(i.svc.cfg, role.GetName(), session)
	k, err := i.sealedKey(arn, id, secret)
	if err != nil {
		return nil, err
	}
	kr, err := i.svc.keys()
	if err != nil {
		return nil, err
	}
	if k.SealedSessionToken, err = kr.Seal(kr.DefaultKeyID(), "iam:"+arn, sessionTokenAAD(id), id,
		storagev1.ValueKind_VALUE_KIND_STRING, []byte(token)); err != nil {
		return nil, err
	}
	expiration := i.svc.now().Add(d)
	k.Expiration = timestamppb.New(expiration)
	k.Role = role.GetName()
	if _, err := i.svc.propose(ctx, &raftv1.Command{Op: &raftv1.Command_CreateAccessKey{CreateAccessKey: &raftv1.CreateAccessKey{AccessKey: k}}}); err != nil {
		return nil, err
	}
	i.svc.log.Info("role assumed", "role", role.GetArn(), "assumed_role", arn, "by", by, "access_key_id", id, "expiration", expiration)
	return &cofferv1.AssumeRoleResponse{AccessKeyId: id, SecretAccessKey: secret, SessionToken: token, Expiration: timestamppb.New(expiration),
		AssumedRoleArn: arn, AssumedRoleId: role.GetRoleId() + ":" + session}, nil
}

func orDenied(err error, otherwise *APIError) error {
	if err != nil {
		return err
	}
	return otherwise
}
