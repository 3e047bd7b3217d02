package main

import (
	"errors"
	"fmt"
	"io"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Exit statuses. Scripts depend on them: change none, and keep docs/CLI.md and
// exitCodeHelp in step when adding one.
const (
	exitOK          = 0 // the command did what it was asked
	exitFailure     = 1 // any failure not listed below
	exitUsage       = 2 // bad flags or arguments, found before any RPC
	exitNotFound    = 3 // ResourceNotFoundException
	exitExists      = 4 // ResourceExistsException
	exitRejected    = 5 // the server rejected the request as invalid
	exitUnreachable = 6 // no answer: unreachable, Unavailable or DeadlineExceeded
	exitDenied      = 7 // PermissionDenied or Unauthenticated
)

// exitCodeHelp is the exit-status table printed by "coffer help".
const exitCodeHelp = `  0  success
  1  any other failure
  2  usage error: bad flags or arguments (no RPC was made)
  3  ResourceNotFoundException
  4  ResourceExistsException
  5  request rejected: InvalidParameterException, InvalidRequestException,
     ValidationException, LimitExceededException, MalformedPolicyDocumentException,
     PublicPolicyException, InvalidNextTokenException; a policy that fails
     "policy validate"
  6  server unreachable, Unavailable or DeadlineExceeded
  7  PermissionDenied or Unauthenticated (AccessDeniedException and the like)
`

// errorDomain is the ErrorInfo domain of errors Coffer's server produces.
const errorDomain = "coffer.v1"

// reasonExitCodes maps the AWS error types the server puts in
// ErrorInfo.Reason to exit statuses. Types not listed exit 1, unless their
// gRPC code is one of transportExitCodes.
var reasonExitCodes = map[string]int{
	"ResourceNotFoundException":        exitNotFound,
	"ResourceExistsException":          exitExists,
	"InvalidParameterException":        exitRejected,
	"InvalidRequestException":          exitRejected,
	"ValidationException":              exitRejected,
	"LimitExceededException":           exitRejected,
	"MalformedPolicyDocumentException": exitRejected,
	"PublicPolicyException":            exitRejected,
	"InvalidNextTokenException":        exitRejected,
	"AccessDeniedException":            exitDenied,
	"UnrecognizedClientException":      exitDenied,
	"InvalidSignatureException":        exitDenied,
	"ExpiredTokenException":            exitDenied,
	"MissingAuthenticationToken":       exitDenied,
}

// transportExitCodes hold for every error with these gRPC codes: they say
// whether the request reached a server that would serve it.
var transportExitCodes = map[codes.Code]int{
	codes.Unavailable:      exitUnreachable,
	codes.DeadlineExceeded: exitUnreachable,
	codes.PermissionDenied: exitDenied,
	codes.Unauthenticated:  exitDenied,
}

// codeExitCodes classify errors that carry no Coffer ErrorInfo, such as those
// from a proxy in front of the server, by their gRPC code alone.
var codeExitCodes = map[codes.Code]int{
	codes.NotFound:        exitNotFound,
	codes.AlreadyExists:   exitExists,
	codes.InvalidArgument: exitRejected,
}

// errHelpShown means usage was printed on request; the command succeeded.
var errHelpShown = errors.New("help shown")

// usageError is a command line that cannot be run. It is found before any RPC.
type usageError struct {
	msg   string
	usage func(io.Writer) // prints the command's usage; nil prints none
}

func (e *usageError) Error() string { return e.msg }

// exitError is a failure with its own exit status that is not an RPC error.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// classify returns the error type to print for st and the exit status.
func classify(st *status.Status) (errType string, code int) {
	if info := errorInfo(st); info != nil {
		if c, ok := reasonExitCodes[info.GetReason()]; ok {
			return info.GetReason(), c
		}
		if c, ok := transportExitCodes[st.Code()]; ok {
			return info.GetReason(), c
		}
		return info.GetReason(), exitFailure
	}
	if c, ok := transportExitCodes[st.Code()]; ok {
		return st.Code().String(), c
	}
	if c, ok := codeExitCodes[st.Code()]; ok {
		return st.Code().String(), c
	}
	return st.Code().String(), exitFailure
}

// errorInfo returns the Coffer ErrorInfo in st's details, if there is one.
func errorInfo(st *status.Status) *errdetails.ErrorInfo {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == errorDomain && info.GetReason() != "" {
			return info
		}
	}
	return nil
}

// report prints err, if any, to stderr and returns the exit status for it.
func (inv *invocation) report(err error) int {
	if err == nil || errors.Is(err, errHelpShown) {
		return exitOK
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(inv.stderr, "coffer: %s\n", ue.msg)
		if ue.usage != nil {
			fmt.Fprintln(inv.stderr)
			ue.usage(inv.stderr)
		}
		return exitUsage
	}
	var ce *childExit
	if errors.As(err, &ce) {
		return ce.code // coffer exec: the command's own status, which it reported itself
	}
	var ee *exitError
	if errors.As(err, &ee) {
		fmt.Fprintf(inv.stderr, "coffer: %s\n", ee.msg)
		return ee.code
	}
	if st, ok := status.FromError(err); ok {
		errType, code := classify(st)
		if st.Message() == "" {
			fmt.Fprintf(inv.stderr, "coffer: %s\n", errType)
		} else {
			fmt.Fprintf(inv.stderr, "coffer: %s: %s\n", errType, st.Message())
		}
		return code
	}
	fmt.Fprintf(inv.stderr, "coffer: %v\n", err)
	return exitFailure
}
