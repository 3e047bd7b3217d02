package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/audit"
	"github.com/cofferhq/coffer/server/sigv4/grpcsig"
)

// AuditRecord is one request as the audit trail records it. It never
// holds a secret value, a data key, a secret access key or a session
// token: parameters that could hold one are HMAC'd (Auditor.HashValue).
type AuditRecord struct {
	Time       time.Time
	Node       string
	RequestID  string
	Principal  string
	SourceAddr string
	// Protocol is "grpc" or "aws".
	Protocol  string
	Operation string
	SecretARN string
	VersionID string
	// Decision is "allow" or "deny"; Statement names the deciding
	// statement ("policy/Sid", "root/full-access").
	Decision  string
	Statement string
	// Outcome is "success" or "error"; ErrorType is the AWS error type.
	Outcome   string
	ErrorType string
	Params    map[string]string
	// Secrets lists, for a request that reads several secrets
	// (BatchGetSecretValue), each one it returned (ARN and version) or
	// could not read (the id asked for and the error type).
	Secrets []audit.SecretRef
}

// Auditor is the audit trail the edge writes to (server/audit.Log, through
// an adapter in node/). Write must return an error when the record
// is not durably appended; the request then fails (fail closed).
type Auditor interface {
	Write(AuditRecord) error
	HashValue(v string) string
	// Healthy reports, cheaply and without writing, whether a Write can be
	// expected to succeed: nil, or why not (the last write failed, the log
	// cannot be opened). The Gate asks before it lets a request act.
	Healthy() error
}

// Gate is the transport edge's access control: for every request, after
// authentication, it decides the request with the Authorizer, puts the
// caller's SecretFilter in the context, and when the request ends writes
// one audit record. The Service itself never authorizes: the rotation
// engine and the replicator call it directly as the system.
type Gate struct {
	// Authz decides requests; nil allows everything (tests of other layers).
	Authz *Authorizer
	// Audit receives one record per request; nil audits nothing.
	Audit Auditor
	// Node names this node in records.
	Node string
	// Log receives audit failures; nil means slog.Default().
	Log *slog.Logger
	// ReadPoint, when set, is Service.ReadPoint: for a linearizable request
	// whose decision reads replicated state (any caller but root), the
	// Gate takes the read point before it looks up the target and decides,
	// so that it decides on the state the Service then serves, and the
	// Service reuses that read point instead of taking a second one.
	ReadPoint func(ctx context.Context) error
	// Limit throttles sources whose requests fail to authenticate (every
	// refusal of an unauthenticated request spends one of the source's
	// tokens); nil throttles no one.
	Limit *SourceLimiter
	// Sample keeps refusals — authentication failures, throttled requests,
	// denials — from filling the audit log (see RefusalSampler); nil
	// records each in full.
	Sample *RefusalSampler
	// Ready, when set, says whether the node serves requests yet: nil once
	// it does, else why not (no leader yet, catching up with the leader's
	// log, no root principal yet). Until then every request but health
	// checks is answered ServiceUnavailable before it is authenticated, so
	// a client that starts with the node gets a retryable answer, never an
	// authentication error for a key the node has not applied yet. Such
	// answers are not audited: the node has served nothing. nil: ready.
	Ready func() error
	// Region names this node's region in every gRPC response's
	// x-coffer-region header (grpcsig.RegionHeader), so a client can learn
	// the credential scope; "" sends none.
	Region string
	// Metrics counts requests, refusals and audit failures; nil counts
	// nothing.
	Metrics EdgeMetrics
	// RequestLog samples the per-request log lines; nil logs every one
	// at Info.
	RequestLog *RequestLog
}

// NotReady is the answer to a request that arrives before the node is
// ready (see Ready), or nil once it is.
func (g *Gate) NotReady() *APIError {
	if g == nil || g.Ready == nil {
		return nil
	}
	err := g.Ready()
	if err == nil {
		return nil
	}
	return &APIError{Type: TypeServiceUnavailable, Message: fmt.Sprintf("This node is starting and does not serve requests yet (%v); retry shortly.", err), cause: err}
}

// setRegionHeader sends the node's region in the response header of a gRPC
// call.
func (g *Gate) setRegionHeader(ctx context.Context) {
	if g != nil && g.Region != "" {
		_ = grpc.SetHeader(ctx, metadata.Pairs(grpcsig.RegionHeader, g.Region))
	}
}

// Call is one request at the edge.
type Call struct {
	Protocol   string
	Operation  string
	Action     string
	Caller     Caller
	SourceAddr string
	// Request is the decoded input; nil for streams.
	Request proto.Message
}

// Exchange is an authorized request in progress; End finishes it.
type Exchange struct {
	gate *Gate
	rec  AuditRecord
}

// errAuditFailed is what a caller sees when its request could not be
// audited: the request fails, and no value is returned.
func errAuditFailed(cause error) *APIError {
	return &APIError{Type: TypeInternalServiceError, Message: "The request could not be recorded in the audit log, so it was refused.", cause: cause}
}

func (g *Gate) logger() *slog.Logger {
	if g.Log != nil {
		return g.Log
	}
	return slog.Default()
}

func (g *Gate) record(ctx context.Context, c Call) AuditRecord {
	rec := AuditRecord{
		Time: time.Now().UTC(), Node: g.Node, RequestID: RequestID(ctx), Principal: c.Caller.Principal,
		SourceAddr: c.SourceAddr, Protocol: c.Protocol, Operation: c.Operation,
	}
	if g.Audit != nil && c.Request != nil {
		rec.Params = auditParams(c.Request, g.Audit.HashValue)
	}
	return rec
}

// Refused audits a request that failed before authorization (it could not
// be authenticated or decoded) and returns err, the caller's answer. A
// request refused before it authenticated spends one of its source's
// tokens (Limit), and the record is sampled (Sample).
func (g *Gate) Refused(ctx context.Context, c Call, err error) error {
	if g == nil {
		return err
	}
	// A node that cannot serve (ServiceUnavailable: diverged, low on disk)
	// is not the caller's failure: it spends none of the source's tokens.
	if c.Caller.Principal == "" && AsAPIError(err).Type != TypeServiceUnavailable {
		g.Limit.Fail(c.SourceAddr)
		g.authFailure(err)
	}
	if g.Audit == nil {
		return err
	}
	rec := g.record(ctx, c)
	rec.Decision, rec.Outcome, rec.ErrorType = "deny", "error", AsAPIError(err).Type
	if !g.Sample.admit(rec, false) {
		return err
	}
	if werr := g.Audit.Write(rec); werr != nil {
		g.auditWriteFailure()
		g.logger().Error("audit write failed", "request_id", rec.RequestID, "err", werr)
	}
	return err
}

// errThrottled is the answer to a request from a source that has used up
// its failed authentications.
var errThrottled = &APIError{Type: TypeThrottling, Message: "Rate exceeded: too many requests from this address failed to authenticate. Retry later."}

// Throttle refuses c, before anything of it is read or decoded, when its
// source has used up its failed authentications (Limit): it returns the
// ThrottlingException to answer with, or nil to go on. A throttled request
// is counted in its source's refusal summary, not recorded on its own.
func (g *Gate) Throttle(ctx context.Context, c Call) error {
	if g == nil || !g.Limit.Throttled(c.SourceAddr) {
		return nil
	}
	if g.Audit != nil {
		rec := g.record(ctx, c)
		rec.Decision, rec.Outcome, rec.ErrorType = "deny", "error", TypeThrottling
		if g.Sample.admit(rec, true) {
			if werr := g.Audit.Write(rec); werr != nil {
				g.auditWriteFailure()
				g.logger().Error("audit write failed", "request_id", rec.RequestID, "err", werr)
			}
		}
	}
	return errThrottled
}

// Begin authorizes c. When it is denied it audits the denial and returns
// the AccessDeniedException; when allowed it returns ctx carrying the
// caller's SecretFilter and an Exchange to Serve (or End) the request with.
//
// Before anything else it asks the audit log whether it is healthy: a
// request that could not be recorded is refused before it acts, rather
// than after a write committed or a snapshot streamed. Its own refusal
// record is the probe that heals the log once it can be written again.
func (g *Gate) Begin(ctx context.Context, c Call) (context.Context, *Exchange, error) {
	if g == nil {
		return ctx, nil, nil
	}
	x := &Exchange{gate: g, rec: g.record(ctx, c)}
	if g.Audit != nil {
		if err := g.Audit.Healthy(); err != nil {
			x.rec.Decision = "deny"
			g.logger().Warn("audit log unhealthy; refusing the request before it acts", "request_id", x.rec.RequestID,
				"operation", x.rec.Operation, "err", err)
			return ctx, nil, x.finish(errAuditFailed(err))
		}
	}
	x.rec.Decision = "allow"
	if g.Authz != nil {
		var err error
		if ctx, err = g.readPoint(ctx, c); err != nil {
			x.rec.Decision = "deny" // undecidable requests fail closed
			return ctx, nil, x.finish(err)
		}
		v, err := g.decide(c)
		if err != nil {
			x.rec.Decision = "deny"
			return ctx, nil, x.finish(err)
		}
		x.rec.Statement = v.Statement()
		if arn := v.Resource; arn != "*" && c.Request != nil {
			if _, ok := c.Request.(interface{ GetSecretId() string }); ok {
				x.rec.SecretARN = arn
			}
		}
		if !v.Allowed {
			g.authzDenial()
			x.rec.Decision = "deny"
			return ctx, nil, x.refuse(v.Err())
		}
		if filteredActions[c.Action] {
			ctx = WithSecretFilter(ctx, callerFilter{a: g.Authz, caller: c.Caller})
		}
		ctx = WithKeyUser(ctx, callerKeys{a: g.Authz, caller: c.Caller})
	}
	return ctx, x, nil
}

// readPoint takes the read point of a linearizable request before it is
// decided (see Gate.ReadPoint), and returns ctx carrying it. Root's
// decision reads no state, and a stale read is decided, like it is served,
// on this node's applied state.
func (g *Gate) readPoint(ctx context.Context, c Call) (context.Context, error) {
	if g.ReadPoint == nil || c.Caller.Principal == RootPrincipal {
		return ctx, nil
	}
	if cl, ok := ctx.Value(callKey{}).(*call); !ok {
		ctx = WithConsistency(ctx, Consistency{}) // a transport that sets none: the default
	} else if cl.consistency.Stale {
		return ctx, nil
	}
	if err := g.ReadPoint(ctx); err != nil {
		return ctx, fmt.Errorf("read point for the decision: %w", err)
	}
	return ctx, nil
}

func (g *Gate) decide(c Call) (Verdict, error) {
	t, err := g.Authz.TargetOf(c.Action, c.Request)
	if err != nil {
		return Verdict{}, err
	}
	// Filtered per secret, or needing no Allow: Authorize lets only an
	// explicit Deny refuse them (and SimulatePolicy answers the same).
	v, err := g.Authz.Authorize(c.Caller, c.Action, t)
	if err != nil || !v.Allowed {
		return v, err
	}
	// As AWS: CreateSecret asking for replicas also needs
	// secretsmanager:ReplicateSecretToRegions on the secret.
	if extra := alsoRequired(c.Action, c.Request); extra != "" {
		return g.Authz.Authorize(c.Caller, extra, t)
	}
	return v, nil
}

// alsoRequired is the action a request needs besides its own, or "".
func alsoRequired(action string, req any) string {
	if r, ok := req.(*cofferv1.CreateSecretRequest); ok && strings.EqualFold(action, SecretAction("CreateSecret")) && len(r.GetAddReplicaRegions()) > 0 {
		return SecretAction("ReplicateSecretToRegions")
	}
	return ""
}

// Serve runs handler, the request's work, and ends the exchange with its
// answer (End); resp is nil whenever err is not. A panic in handler is
// recorded (outcome error, InternalServiceError) and then raised again,
// for the transport to recover and answer as it does any panic: no
// request leaves the edge unaudited. With a nil Exchange (no Gate) it
// only calls handler.
func (x *Exchange) Serve(handler func() (proto.Message, error)) (resp proto.Message, err error) {
	if x == nil {
		return handler()
	}
	returned := false
	defer func() {
		if returned {
			return
		}
		p := recover() // nil when handler called runtime.Goexit
		// A failed write is logged by finish; the panic goes on either way.
		_ = x.finish(&APIError{Type: TypeInternalServiceError, Message: "An error occurred on the server side."})
		if p != nil {
			panic(p)
		}
	}()
	resp, err = handler()
	returned = true
	if err = x.End(resp, err); err != nil {
		return nil, err
	}
	return resp, nil
}

// End audits the finished request. When the record cannot be written it
// returns an error in place of err — the caller gets no response, so no
// value leaves the node unaudited. (A write has been committed by then;
// the caller sees it failed and may retry, idempotently by its token.)
func (x *Exchange) End(resp proto.Message, err error) error {
	if x == nil {
		return err
	}
	if resp != nil && err == nil {
		if r, ok := resp.(interface{ GetArn() string }); ok && strings.Contains(r.GetArn(), ":secretsmanager:") {
			x.rec.SecretARN = r.GetArn()
		}
		if r, ok := resp.(interface{ GetVersionId() string }); ok {
			x.rec.VersionID = r.GetVersionId()
		}
		if r, ok := resp.(*cofferv1.BatchGetSecretValueResponse); ok {
			x.rec.Secrets = batchSecrets(r)
		}
	}
	return x.finish(err)
}

// batchSecrets names every secret a BatchGetSecretValue answer returned a
// value of, and every one it could not read, so that a batch read leaves
// the same trace as the single reads it replaces.
func batchSecrets(r *cofferv1.BatchGetSecretValueResponse) []audit.SecretRef {
	var refs []audit.SecretRef
	for _, v := range r.GetSecretValues() {
		refs = append(refs, audit.SecretRef{ARN: v.GetArn(), VersionID: v.GetVersionId()})
	}
	for _, e := range r.GetErrors() {
		refs = append(refs, audit.SecretRef{ARN: clearParam(e.GetSecretId()), ErrorType: clearParam(e.GetErrorCode())})
	}
	return refs
}

// refuse audits a denial, sampled (Gate.Sample): the first of its kind in
// an interval in full, later ones counted.
func (x *Exchange) refuse(err error) error {
	x.rec.Outcome, x.rec.ErrorType = "error", AsAPIError(err).Type
	if x.gate.Audit == nil || x.gate.Sample.admit(x.rec, false) {
		return x.finish(err)
	}
	return err
}

func (x *Exchange) finish(err error) error {
	if x.gate.Audit == nil {
		return err
	}
	x.rec.Outcome = "success"
	if err != nil {
		x.rec.Outcome, x.rec.ErrorType = "error", AsAPIError(err).Type
	}
	if werr := x.gate.Audit.Write(x.rec); werr != nil {
		x.gate.auditWriteFailure()
		x.gate.logger().Error("audit write failed; refusing the request", "request_id", x.rec.RequestID,
			"operation", x.rec.Operation, "arn", x.rec.SecretARN, "err", werr)
		return errAuditFailed(werr)
	}
	return err
}

// How the audit trail records a request's fields. Only a request's own
// scalar fields are recorded (lists and maps as their sizes, nested
// messages not at all), so these sets name top-level fields, by name in
// every service. TestAuditParamsNeverRecordASecret walks every request of
// every API service and fails on a field whose name suggests it could hold
// a secret and that is recorded in clear without being on its allow-list.

// sensitiveFields can hold a secret or a credential; the audit trail keeps
// only their HMAC (Auditor.HashValue), which an operator can match against
// a known value's (AdminService.AuditHash).
var sensitiveFields = map[protoreflect.Name]bool{
	"secret_string":        true,
	"secret_binary":        true,
	"client_request_token": true,
	"secret_access_key":    true,
	"session_token":        true,
	"rotation_token":       true,
	"password":             true,
	"shared_secret":        true, // a rotation function's HMAC key
	"value":                true, // AuditHash's value
	"web_identity_token":   true, // a bearer credential (AssumeRoleWithWebIdentity)
	"nonce":                true, // a rekey's nonce (SealService.Rekey)
}

// omittedFields are never recorded, not even as a hash: a snapshot chunk
// is the whole store, and large; a key share is key material.
var omittedFields = map[protoreflect.Name]bool{
	"chunk": true,
	"share": true, // a key share of the root key (SealService)
}

// urlFields are URLs, which can carry credentials anywhere: in userinfo,
// in the query, in a webhook's path. The trail keeps the scheme and host,
// and the HMAC of the whole URL as "<field>.hmac".
var urlFields = map[protoreflect.Name]bool{
	"url": true,
}

// maxParamLen bounds a recorded parameter; a policy document can be long.
const maxParamLen = 256

// auditParams renders a request's set scalar fields (and the sizes of its
// lists) as strings, HMAC'ing those that could hold secrets.
func auditParams(req proto.Message, hash func(string) string) map[string]string {
	out := map[string]string{}
	m := req.ProtoReflect()
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := string(fd.Name())
		switch {
		case fd.IsList():
			out[name+".count"] = strconv.Itoa(v.List().Len())
		case fd.IsMap():
			out[name+".count"] = strconv.Itoa(v.Map().Len())
		case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind:
			// nested messages are not recorded
		case omittedFields[fd.Name()]:
		case sensitiveFields[fd.Name()]:
			out[name] = hash(rawString(fd, v))
		case urlFields[fd.Name()]:
			raw := rawString(fd, v)
			out[name+".hmac"] = hash(raw)
			if origin := urlOrigin(raw); origin != "" {
				out[name] = origin
			}
		default:
			out[name] = clearParam(rawString(fd, v))
		}
		return true
	})
	if len(out) == 0 {
		return nil
	}
	return out
}

func rawString(fd protoreflect.FieldDescriptor, v protoreflect.Value) string {
	if fd.Kind() == protoreflect.BytesKind {
		return string(v.Bytes())
	}
	return v.String()
}

// urlOrigin is the scheme and host of an absolute URL, with "/…" when
// something followed them, or "" when raw is not one.
func urlOrigin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return ""
	}
	origin := clearParam(u.Scheme + "://" + u.Host)
	if u.Opaque != "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		origin += "/…"
	}
	return origin
}

// userinfo matches the credentials part of a URL ("scheme://user:pass@").
var userinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@`)

// clearParam is a parameter as recorded in clear: without the userinfo of
// any URL in it (a description can quote a connection string), and
// truncated to maxParamLen.
func clearParam(s string) string {
	if strings.Contains(s, "://") {
		s = userinfo.ReplaceAllString(s, "${1}REDACTED@")
	}
	if len(s) > maxParamLen {
		s = truncateUTF8(s, maxParamLen) + "…"
	}
	return s
}

func truncateUTF8(s string, n int) string {
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// hostOf strips the port from a network address, for aws:SourceIp.
func hostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

// HostOf is hostOf for other packages (the AWS handler).
func HostOf(addr string) string { return hostOf(addr) }
