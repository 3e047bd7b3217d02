package storage_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	"github.com/cofferhq/coffer/storage"
)

func TestPutSecretValue(t *testing.T) {
	t.Parallel()
	arn := arnOf("app", "AAAAAA")
	tests := []struct {
		name   string
		puts   []*raftv1.PutSecretValue // applied after creating with version 1
		want   map[string][]string
		result []string // Stages of the last put's result
	}{
		{
			name:   "default moves AWSCURRENT and AWSPREVIOUS",
			puts:   []*raftv1.PutSecretValue{putOp(arn, 2, "b")},
			want:   L(1, "AWSPREVIOUS", 2, "AWSCURRENT"),
			result: []string{"AWSCURRENT"},
		},
		{
			name:   "third put leaves the oldest deprecated",
			puts:   []*raftv1.PutSecretValue{putOp(arn, 2, "b"), putOp(arn, 3, "c")},
			want:   L(1, "", 2, "AWSPREVIOUS", 3, "AWSCURRENT"),
			result: []string{"AWSCURRENT"},
		},
		{
			name:   "explicit AWSCURRENT behaves like the default",
			puts:   []*raftv1.PutSecretValue{putOp(arn, 2, "b", "AWSCURRENT")},
			want:   L(1, "AWSPREVIOUS", 2, "AWSCURRENT"),
			result: []string{"AWSCURRENT"},
		},
		{
			name:   "AWSPENDING leaves AWSCURRENT alone",
			puts:   []*raftv1.PutSecretValue{putOp(arn, 2, "b", "AWSPENDING")},
			want:   L(1, "AWSCURRENT", 2, "AWSPENDING"),
			result: []string{"AWSPENDING"},
		},
		{
			name:   "AWSPENDING moves off the old pending version",
			puts:   []*raftv1.PutSecretValue{putOp(arn, 2, "b", "AWSPENDING"), putOp(arn, 3, "c", "AWSPENDING")},
			want:   L(1, "AWSCURRENT", 2, "", 3, "AWSPENDING"),
			result: []string{"AWSPENDING"},
		},
		{
			name:   "custom label with AWSCURRENT",
			puts:   []*raftv1.PutSecretValue{putOp(arn, 2, "b", "AWSCURRENT", "CHAMBER1")},
			want:   L(1, "AWSPREVIOUS", 2, "AWSCURRENT,CHAMBER1"),
			result: []string{"AWSCURRENT", "CHAMBER1"},
		},
		{
			name: "custom label moves between versions",
			puts: []*raftv1.PutSecretValue{
				putOp(arn, 2, "b", "AWSCURRENT", "CHAMBER"),
				putOp(arn, 3, "c", "AWSCURRENT", "CHAMBER"),
			},
			want:   L(1, "", 2, "AWSPREVIOUS", 3, "AWSCURRENT,CHAMBER"),
			result: []string{"AWSCURRENT", "CHAMBER"},
		},
		{
			name:   "custom label alone",
			puts:   []*raftv1.PutSecretValue{putOp(arn, 2, "b", "blue")},
			want:   L(1, "AWSCURRENT", 2, "blue"),
			result: []string{"blue"},
		},
		{
			name:   "twenty labels",
			puts:   []*raftv1.PutSecretValue{putOp(arn, 2, "b", manyLabels(20)...)},
			want:   L(1, "AWSCURRENT", 2, join(manyLabels(20))),
			result: manyLabels(20),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.ok(0, createWithValue("app", "AAAAAA", 1, "a"))
			var res *storage.Result
			for i, p := range tt.puts {
				res = f.ok(time.Duration(i+1)*time.Hour, p)
			}
			last := tt.puts[len(tt.puts)-1]
			if res.ARN != arn || res.VersionID != last.GetVersion().GetVersionId() {
				t.Fatalf("result = %+v, want %s version %s", res, arn, last.GetVersion().GetVersionId())
			}
			got := slices.Clone(res.Stages)
			slices.Sort(got)
			want := slices.Clone(tt.result)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("result stages = %v, want %v", res.Stages, tt.result)
			}
			sec := f.secret(arn)
			wantLabels(t, sec, tt.want)
			wantTime(t, "LastChangedDate", sec.GetLastChangedDate(), base.Add(time.Duration(len(tt.puts))*time.Hour))
			wantTime(t, "CreatedDate", sec.GetCreatedDate(), base)
			wantProto(t, "new value", f.value(arn, last.GetVersion().GetVersionId(), "").Value, last.GetVersion().GetValue())
		})
	}
}

func manyLabels(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("L%02d", i))
	}
	return out
}

func join(l []string) string {
	s := ""
	for i, x := range l {
		if i > 0 {
			s += ","
		}
		s += x
	}
	return s
}

func TestPutSecretValueErrors(t *testing.T) {
	t.Parallel()
	arn := arnOf("app", "AAAAAA")
	tests := []struct {
		name  string
		setup []proto.Message // after creating with version 1 and putting version 2
		op    proto.Message
		kind  error
		msg   string
	}{
		{
			name: "token reused with another value",
			op:   putOp(arn, 2, "not b"),
			kind: storage.ErrTokenInUse,
			msg: fmt.Sprintf("You can't use ClientRequestToken %s because that value is already in use for a version of secret %s.",
				vid(2), arn),
		},
		{
			name: "token of the first version reused",
			op:   putOp(arn, 1, "b"),
			kind: storage.ErrTokenInUse,
		},
		{
			name:  "secret scheduled for deletion",
			setup: []proto.Message{deleteOp(arn, 7)},
			op:    putOp(arn, 3, "c"),
			kind:  storage.ErrMarkedForDeletion,
			msg:   msgMarked,
		},
		{
			name: "unknown secret",
			op:   putOp(arnOf("nope", "AAAAAA"), 3, "c"),
			kind: storage.ErrSecretNotFound,
			msg:  msgNoARN,
		},
		{
			name: "partial ARN is not accepted in a command",
			op:   putOp("arn:aws:secretsmanager:eu-west-1:123456789012:secret:app", 3, "c"),
			kind: storage.ErrSecretNotFound,
		},
		{
			name:  "deleted and recreated",
			setup: []proto.Message{forceDeleteOp(arn), createWithValue("app", "BBBBBB", 5, "new")},
			op:    putOp(arn, 3, "c"),
			kind:  storage.ErrSecretNotFound,
			msg:   msgNoARN,
		},
		{
			name: "twenty-one labels",
			op:   putOp(arn, 3, "c", manyLabels(21)...),
			kind: storage.ErrLimitExceeded,
			msg:  "A version can have at most 20 staging labels.",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.ok(0, createWithValue("app", "AAAAAA", 1, "a"))
			f.ok(time.Minute, putOp(arn, 2, "b"))
			for i, op := range tt.setup {
				f.ok(time.Hour+time.Duration(i)*time.Minute, op)
			}
			f.fails(2*time.Hour, tt.op, tt.kind, tt.msg)
		})
	}
}

// TestPutSecretValueRetry: the same token and value is a no-op that answers
// like the first call, even when AWSCURRENT has moved on since.
func TestPutSecretValueRetry(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	arn := arnOf("app", "AAAAAA")
	f.ok(0, createWithValue("app", "AAAAAA", 1, "a"))
	first := f.ok(time.Hour, putOp(arn, 2, "b"))
	before := dump(t, f.store)
	res := f.ok(2*time.Hour, putOp(arn, 2, "b"))
	if res.ARN != arn || res.VersionID != vid(2) || !slices.Equal(res.Stages, first.Stages) {
		t.Fatalf("retry result = %+v, want %+v", res, first)
	}
	after := dump(t, f.store)
	after.applied = before.applied
	sameState(t, after, before)
	wantTime(t, "LastChangedDate", f.secret(arn).GetLastChangedDate(), base.Add(time.Hour))

	// A retry of a version that is no longer current still succeeds and
	// reports the labels the version has now.
	f.ok(3*time.Hour, putOp(arn, 3, "c"))
	res = f.ok(4*time.Hour, putOp(arn, 2, "b"))
	if res.VersionID != vid(2) || !slices.Equal(res.Stages, []string{"AWSPREVIOUS"}) {
		t.Fatalf("late retry result = %+v, want version 2 [AWSPREVIOUS]", res)
	}
	wantLabels(t, f.secret(arn), L(1, "", 2, "AWSPREVIOUS", 3, "AWSCURRENT"))
}

// TestPutSecretValueFirstVersion: AWS attaches AWSCURRENT to the first
// version of a secret whatever labels the put names.
func TestPutSecretValueFirstVersion(t *testing.T) {
	t.Parallel()
	arn := arnOf("empty", "AAAAAA")
	tests := []struct {
		name   string
		stages []string
		want   map[string][]string
	}{
		{"default", nil, L(1, "AWSCURRENT")},
		{"AWSPENDING", []string{"AWSPENDING"}, L(1, "AWSCURRENT,AWSPENDING")},
		{"custom", []string{"blue"}, L(1, "AWSCURRENT,blue")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.ok(0, createOp("empty", "AAAAAA"))
			res := f.ok(time.Hour, putOp(arn, 1, "a", tt.stages...))
			if !slices.Contains(res.Stages, "AWSCURRENT") {
				t.Fatalf("result stages = %v, want AWSCURRENT among them", res.Stages)
			}
			wantLabels(t, f.secret(arn), tt.want)
			if got := f.value("empty", "", "").Version.GetVersionId(); got != vid(1) {
				t.Fatalf("AWSCURRENT value is version %s, want %s", got, vid(1))
			}
		})
	}
}

func TestUpdateSecret(t *testing.T) {
	t.Parallel()
	arn := arnOf("app", "AAAAAA")
	at := 5 * time.Hour
	tests := []struct {
		name    string
		op      *raftv1.UpdateSecret
		desc    string
		kms     string
		labels  map[string][]string
		version string // expected Result.VersionID
	}{
		{
			name:   "description only",
			op:     &raftv1.UpdateSecret{Arn: arn, Description: proto.String("new words")},
			desc:   "new words",
			kms:    "alias/old",
			labels: L(1, "AWSCURRENT"),
		},
		{
			name:   "clear description",
			op:     &raftv1.UpdateSecret{Arn: arn, Description: proto.String("")},
			desc:   "",
			kms:    "alias/old",
			labels: L(1, "AWSCURRENT"),
		},
		{
			name:   "KMS key only",
			op:     &raftv1.UpdateSecret{Arn: arn, KmsKeyId: proto.String("alias/new")},
			desc:   "old words",
			kms:    "alias/new",
			labels: L(1, "AWSCURRENT"),
		},
		{
			name:    "value",
			op:      &raftv1.UpdateSecret{Arn: arn, Version: newVersion(2, "b")},
			desc:    "old words",
			kms:     "alias/old",
			labels:  L(1, "AWSPREVIOUS", 2, "AWSCURRENT"),
			version: vid(2),
		},
		{
			name: "everything",
			op: &raftv1.UpdateSecret{Arn: arn, Description: proto.String("d"), KmsKeyId: proto.String("k"),
				Version: newVersion(2, "b")},
			desc:    "d",
			kms:     "k",
			labels:  L(1, "AWSPREVIOUS", 2, "AWSCURRENT"),
			version: vid(2),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			op := createWithValue("app", "AAAAAA", 1, "a")
			op.Description, op.KmsKeyId = "old words", "alias/old"
			f.ok(0, op)
			res := f.ok(at, tt.op)
			if res.ARN != arn || res.Name != "app" || res.VersionID != tt.version {
				t.Fatalf("result = %+v, want %s version %q", res, arn, tt.version)
			}
			if tt.version != "" && !slices.Equal(res.Stages, []string{"AWSCURRENT"}) {
				t.Fatalf("result stages = %v, want [AWSCURRENT]", res.Stages)
			}
			sec := f.secret(arn)
			if sec.GetDescription() != tt.desc || sec.GetKmsKeyId() != tt.kms {
				t.Fatalf("description, kms = %q, %q; want %q, %q", sec.GetDescription(), sec.GetKmsKeyId(), tt.desc, tt.kms)
			}
			wantLabels(t, sec, tt.labels)
			wantTime(t, "LastChangedDate", sec.GetLastChangedDate(), base.Add(at))
			if tt.version != "" {
				wantProto(t, "AWSCURRENT value", f.value(arn, "", "AWSCURRENT").Value, tt.op.GetVersion().GetValue())
			}
		})
	}
}

func TestUpdateSecretErrors(t *testing.T) {
	t.Parallel()
	arn := arnOf("app", "AAAAAA")
	tests := []struct {
		name  string
		setup []proto.Message
		op    *raftv1.UpdateSecret
		kind  error
		msg   string
	}{
		{
			name:  "scheduled for deletion",
			setup: []proto.Message{deleteOp(arn, 30)},
			op:    &raftv1.UpdateSecret{Arn: arn, Description: proto.String("x")},
			kind:  storage.ErrMarkedForDeletion,
			msg:   msgMarked,
		},
		{
			name:  "scheduled for deletion, with value",
			setup: []proto.Message{deleteOp(arn, 30)},
			op:    &raftv1.UpdateSecret{Arn: arn, Version: newVersion(2, "b")},
			kind:  storage.ErrMarkedForDeletion,
			msg:   msgMarked,
		},
		{
			name: "unknown secret",
			op:   &raftv1.UpdateSecret{Arn: arnOf("other", "AAAAAA"), Description: proto.String("x")},
			kind: storage.ErrSecretNotFound,
			msg:  msgNoARN,
		},
		{
			name: "token in use, description not changed either",
			op:   &raftv1.UpdateSecret{Arn: arn, Description: proto.String("x"), Version: newVersion(1, "not a")},
			kind: storage.ErrTokenInUse,
			msg: fmt.Sprintf("You can't use ClientRequestToken %s because that value is already in use for a version of secret %s.",
				vid(1), arn),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.ok(0, createWithValue("app", "AAAAAA", 1, "a"))
			for _, op := range tt.setup {
				f.ok(time.Minute, op)
			}
			f.fails(time.Hour, tt.op, tt.kind, tt.msg)
		})
	}
}

func TestUpdateSecretRetry(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	arn := arnOf("app", "AAAAAA")
	f.ok(0, createWithValue("app", "AAAAAA", 1, "a"))
	f.ok(time.Hour, &raftv1.UpdateSecret{Arn: arn, Version: newVersion(2, "b")})
	before := dump(t, f.store)
	res := f.ok(2*time.Hour, &raftv1.UpdateSecret{Arn: arn, Version: newVersion(2, "b")})
	if res.VersionID != vid(2) || !slices.Equal(res.Stages, []string{"AWSCURRENT"}) {
		t.Fatalf("retry result = %+v, want version 2 [AWSCURRENT]", res)
	}
	after := dump(t, f.store)
	after.applied = before.applied
	sameState(t, after, before)
}

func TestSecretValue(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	arn := arnOf("app", "AAAAAA")
	f.ok(0, createWithValue("app", "AAAAAA", 1, "a"))
	f.ok(time.Hour, putOp(arn, 2, "b"))
	f.ok(2*time.Hour, putOp(arn, 3, "c", "AWSPENDING"))
	f.ok(3*time.Hour, putOp(arn, 4, "d", "AWSCURRENT"))
	f.ok(4*time.Hour, putOp(arn, 5, "e", "AWSCURRENT")) // 2 is now deprecated
	wantLabels(t, f.secret(arn), L(1, "", 2, "", 3, "AWSPENDING", 4, "AWSPREVIOUS", 5, "AWSCURRENT"))

	tests := []struct {
		name      string
		ref       string
		versionID string
		stage     string
		want      int    // version number on success
		plain     string // its value
		kind      error
		msg       string
	}{
		{name: "default is AWSCURRENT", ref: "app", want: 5, plain: "e"},
		{name: "by full ARN", ref: arn, want: 5, plain: "e"},
		{name: "by partial ARN", ref: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:app", want: 5, plain: "e"},
		{name: "by id", ref: "app", versionID: vid(4), want: 4, plain: "d"},
		{name: "deprecated by id", ref: "app", versionID: vid(2), want: 2, plain: "b"},
		{name: "by stage", ref: "app", stage: "AWSPREVIOUS", want: 4, plain: "d"},
		{name: "pending by stage", ref: "app", stage: "AWSPENDING", want: 3, plain: "c"},
		{name: "id and stage agree", ref: "app", versionID: vid(3), stage: "AWSPENDING", want: 3, plain: "c"},
		{
			name: "id and stage disagree", ref: "app", versionID: vid(4), stage: "AWSCURRENT",
			kind: storage.ErrStageMismatch, msg: "You provided a VersionStage that is not associated to the provided VersionId.",
		},
		{
			name: "deprecated id with a stage", ref: "app", versionID: vid(2), stage: "AWSCURRENT",
			kind: storage.ErrStageMismatch, msg: "You provided a VersionStage that is not associated to the provided VersionId.",
		},
		{
			name: "unknown id", ref: "app", versionID: vid(9),
			kind: storage.ErrVersionNotFound, msg: "Secrets Manager can't find the specified secret value for VersionId: " + vid(9),
		},
		{
			name: "unknown stage", ref: "app", stage: "blue",
			kind: storage.ErrStageNotFound, msg: "Secrets Manager can't find the specified secret value for staging label: blue",
		},
		{
			name: "unknown secret", ref: "nope",
			kind: storage.ErrSecretNotFound, msg: msgNoARN,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.store.SecretValue(tt.ref, tt.versionID, tt.stage)
			if tt.kind != nil {
				wantErr(t, err, tt.kind, tt.msg)
				if got != nil {
					t.Fatalf("SecretValue returned %v with an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("SecretValue: %v", err)
			}
			if got.Version.GetVersionId() != vid(tt.want) || got.Secret.GetArn() != arn {
				t.Fatalf("got version %s of %s, want %s", got.Version.GetVersionId(), got.Secret.GetArn(), vid(tt.want))
			}
			wantProto(t, "value", got.Value, sealed(tt.plain))
		})
	}

	// Once the secret is scheduled for deletion no read succeeds, even of a
	// version that exists.
	f.ok(5*time.Hour, deleteOp(arn, 7))
	for _, q := range [][2]string{{"", ""}, {vid(5), ""}, {"", "AWSCURRENT"}, {vid(9), ""}} {
		_, err := f.store.SecretValue("app", q[0], q[1])
		wantErr(t, err, storage.ErrMarkedForDeletion, msgMarked)
	}
}
