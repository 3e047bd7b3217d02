package replication

import (
	"errors"

	"google.golang.org/protobuf/types/known/timestamppb"

	replicationv1 "github.com/cofferhq/coffer/proto/coffer/replication/v1"
	"github.com/cofferhq/coffer/storage"
)

// encodeResult puts a storage result on the wire for a forwarded write. The
// domain error travels as its kind's position in storage.Sentinels, so the
// follower hands its caller the very same kind.
func encodeResult(r *storage.Result) *replicationv1.ApplyResult {
	out := &replicationv1.ApplyResult{
		Index: r.Index, Arn: r.ARN, Name: r.Name, VersionId: r.VersionID,
		Stages: r.Stages, Skipped: r.Skipped,
	}
	if !r.DeletionDate.IsZero() {
		out.DeletionDate = timestamppb.New(r.DeletionDate)
	}
	if r.Err != nil {
		out.ErrorMessage = r.Err.Error()
		out.ErrorKind = storage.KindNumber(r.Err)
	}
	return out
}

func decodeResult(in *replicationv1.ApplyResult) *storage.Result {
	r := &storage.Result{
		Index: in.GetIndex(), ARN: in.GetArn(), Name: in.GetName(), VersionID: in.GetVersionId(),
		Stages: in.GetStages(), Skipped: in.GetSkipped(),
	}
	if in.GetDeletionDate() != nil {
		r.DeletionDate = in.GetDeletionDate().AsTime()
	}
	if e := storage.FromKindNumber(in.GetErrorKind(), in.GetErrorMessage()); e != nil {
		r.Err = e
	} else if in.GetErrorMessage() != "" {
		r.Err = errors.New(in.GetErrorMessage())
	}
	return r
}
