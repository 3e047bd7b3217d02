package storage

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Result is what applying one command produced. Err holds a domain failure
// (an *Error); everything else describes the success.
type Result struct {
	// Index is the log index the command was applied at.
	Index     uint64
	ARN       string
	Name      string
	VersionID string
	// Stages are the labels on VersionID after the command.
	Stages []string
	// DeletionDate is when a deleted secret is (or was) gone for good.
	DeletionDate time.Time
	// Skipped is true when the entry was at or below the applied index and
	// so was not applied again (a replay after restart).
	Skipped bool
	Err     error
}

// A Result is carried by two messages whose formats are fixed:
// storagev1.AppliedProposal, a remembered proposal's result (in the state
// file and in snapshots), and replicationv1.ApplyResult, the answer to a
// forwarded write (between nodes that may run different builds). Their
// field numbers differ and must not change; their field names are the same.
// EncodeResult and DecodeResult are the one mapping between a Result and
// those names (see DESIGN.md, "One Result, two formats").
const (
	resultIndex        protoreflect.Name = "index"
	resultARN          protoreflect.Name = "arn"
	resultName         protoreflect.Name = "name"
	resultVersionID    protoreflect.Name = "version_id"
	resultStages       protoreflect.Name = "stages"
	resultDeletionDate protoreflect.Name = "deletion_date"
	resultSkipped      protoreflect.Name = "skipped"
	// resultErrorKind is 0 for no error or one that is not a domain failure,
	// else KindNumber.
	resultErrorKind    protoreflect.Name = "error_kind"
	resultErrorMessage protoreflect.Name = "error_message"
)

// EncodeResult writes r into m, a message that declares the result fields.
// A part of r that m has no field for must be zero (AppliedProposal has no
// skipped: a skipped entry is never remembered); it panics otherwise,
// because the part would be lost without a trace.
func EncodeResult(r *Result, m proto.Message) {
	w := resultMessage{m.ProtoReflect()}
	w.set(resultIndex, r.Index != 0, protoreflect.ValueOfUint64(r.Index))
	w.set(resultARN, r.ARN != "", protoreflect.ValueOfString(r.ARN))
	w.set(resultName, r.Name != "", protoreflect.ValueOfString(r.Name))
	w.set(resultVersionID, r.VersionID != "", protoreflect.ValueOfString(r.VersionID))
	if len(r.Stages) > 0 {
		l := w.m.Mutable(w.mustField(resultStages)).List()
		for _, s := range r.Stages {
			l.Append(protoreflect.ValueOfString(s))
		}
	}
	if !r.DeletionDate.IsZero() {
		w.set(resultDeletionDate, true, protoreflect.ValueOfMessage(timestamppb.New(r.DeletionDate).ProtoReflect()))
	}
	w.set(resultSkipped, r.Skipped, protoreflect.ValueOfBool(r.Skipped))
	if r.Err != nil {
		kind := KindNumber(r.Err)
		w.set(resultErrorKind, kind != 0, protoreflect.ValueOfUint32(kind))
		w.set(resultErrorMessage, true, protoreflect.ValueOfString(r.Err.Error()))
	}
}

// DecodeResult reads the Result m carries. A domain failure of a kind this
// build does not know (a newer build's) comes back as a plain error with its
// message, so a failure never reads as a success.
func DecodeResult(m proto.Message) *Result {
	w := resultMessage{m.ProtoReflect()}
	r := &Result{
		Index:     w.get(resultIndex, protoreflect.ValueOfUint64(0)).Uint(),
		ARN:       w.get(resultARN, protoreflect.ValueOfString("")).String(),
		Name:      w.get(resultName, protoreflect.ValueOfString("")).String(),
		VersionID: w.get(resultVersionID, protoreflect.ValueOfString("")).String(),
		Skipped:   w.get(resultSkipped, protoreflect.ValueOfBool(false)).Bool(),
	}
	if fd := w.field(resultStages); fd != nil {
		for l, i := w.m.Get(fd).List(), 0; i < l.Len(); i++ {
			r.Stages = append(r.Stages, l.Get(i).String())
		}
	}
	if fd := w.field(resultDeletionDate); fd != nil && w.m.Has(fd) {
		r.DeletionDate = w.m.Get(fd).Message().Interface().(*timestamppb.Timestamp).AsTime()
	}
	msg := w.get(resultErrorMessage, protoreflect.ValueOfString("")).String()
	if e := FromKindNumber(uint32(w.get(resultErrorKind, protoreflect.ValueOfUint32(0)).Uint()), msg); e != nil {
		r.Err = e
	} else if msg != "" {
		r.Err = errors.New(msg)
	}
	return r
}

// resultMessage is a message that carries a Result, seen through the
// result fields' names.
type resultMessage struct{ m protoreflect.Message }

// field returns the field called name, or nil when the message has none.
func (w resultMessage) field(name protoreflect.Name) protoreflect.FieldDescriptor {
	return w.m.Descriptor().Fields().ByName(name)
}

// mustField returns the field called name; a message without it cannot
// carry that part of the result.
func (w resultMessage) mustField(name protoreflect.Name) protoreflect.FieldDescriptor {
	fd := w.field(name)
	if fd == nil {
		panic(fmt.Sprintf("storage: %s has no field %s; the result's %s would be lost", w.m.Descriptor().FullName(), name, name))
	}
	return fd
}

// set stores v in the field called name when present is true: a part left
// at zero needs no field.
func (w resultMessage) set(name protoreflect.Name, present bool, v protoreflect.Value) {
	if present {
		w.m.Set(w.mustField(name), v)
	}
}

// get reads the field called name, or zero when the message has none.
func (w resultMessage) get(name protoreflect.Name, zero protoreflect.Value) protoreflect.Value {
	if fd := w.field(name); fd != nil {
		return w.m.Get(fd)
	}
	return zero
}
