package server

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
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
}

// Auditor is the audit trail the edge writes to (server/audit.Log, through
// an adapter in server/node). Write must return an error when the record
// is not durably appended; the request then fails (fail closed).
type Auditor interface {
	Write(AuditRecord) error
	HashValue(v string) string
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
// be authenticated or decoded) and returns err, the caller's answer.
func (g *Gate) Refused(ctx context.Context, c Call, err error) error {
	if g == nil || g.Audit == nil {
		return err
	}
	rec := g.record(ctx, c)
	rec.Decision, rec.Outcome, rec.ErrorType = "deny", "error", AsAPIError(err).Type
	if werr := g.Audit.Write(rec); werr != nil {
		g.logger().Error("audit write failed", "request_id", rec.RequestID, "err", werr)
	}
	return err
}

// Begin authorizes c. When it is denied it audits the denial and returns
// the AccessDeniedException; when allowed it returns ctx carrying the
// caller's SecretFilter and an Exchange to End once the request is done.
func (g *Gate) Begin(ctx context.Context, c Call) (context.Context, *Exchange, error) {
	if g == nil {
		return ctx, nil, nil
	}
	x := &Exchange{gate: g, rec: g.record(ctx, c)}
	x.rec.Decision = "allow"
	if g.Authz != nil {
		v, err := g.decide(c)
		if err != nil {
			x.rec.Decision = "deny" // undecidable requests fail closed
			return ctx, nil, x.finish(err)
		}
		x.rec.Statement = v.Statement()
		if arn := v.Resource; arn != "*" && c.Request != nil {
			if _, ok := c.Request.(interface{ GetSecretId() string }); ok {
				x.rec.SecretARN = arn
			}
		}
		if !v.Allowed {
			x.rec.Decision = "deny"
			return ctx, nil, x.finish(v.Err())
		}
		if filteredActions[c.Action] {
			ctx = WithSecretFilter(ctx, callerFilter{a: g.Authz, caller: c.Caller})
		}
	}
	return ctx, x, nil
}

func (g *Gate) decide(c Call) (Verdict, error) {
	t, err := g.Authz.TargetOf(c.Action, c.Request)
	if err != nil {
		return Verdict{}, err
	}
	// Filtered per secret, or needing no Allow: Authorize lets only an
	// explicit Deny refuse them (and SimulatePolicy answers the same).
	return g.Authz.Authorize(c.Caller, c.Action, t)
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
	}
	return x.finish(err)
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
		x.gate.logger().Error("audit write failed; refusing the request", "request_id", x.rec.RequestID,
			"operation", x.rec.Operation, "arn", x.rec.SecretARN, "err", werr)
		return errAuditFailed(werr)
	}
	return err
}

// sensitiveFields are request fields that can hold a secret or a
// credential; the audit trail keeps only their HMAC.
var sensitiveFields = map[protoreflect.Name]bool{
	"secret_string":        true,
	"secret_binary":        true,
	"client_request_token": true,
	"secret_access_key":    true,
	"session_token":        true,
	"rotation_token":       true,
	"password":             true,
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
		case fd.Kind() == protoreflect.MessageKind:
			// nested messages carry no secrets we record
		case sensitiveFields[fd.Name()]:
			var raw string
			if fd.Kind() == protoreflect.BytesKind {
				raw = string(v.Bytes())
			} else {
				raw = v.String()
			}
			out[name] = hash(raw)
		default:
			s := v.String()
			if len(s) > maxParamLen {
				s = truncateUTF8(s, maxParamLen) + "…"
			}
			out[name] = s
		}
		return true
	})
	if len(out) == 0 {
		return nil
	}
	return out
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
