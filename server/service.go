package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/rotation"
	"github.com/cofferhq/coffer/storage"
	"github.com/cofferhq/coffer/storage/kms"
)

// Replicator is what the service needs from the region's Raft node.
type Replicator interface {
	// Apply commits cmd through the region's log (forwarding it to the
	// leader if need be) and returns its result.
	Apply(ctx context.Context, cmd *raftv1.Command) (*storage.Result, error)
	// IsLeader reports whether this node leads the region.
	IsLeader() bool
	// ReadBarrier returns once a read of local state is linearizable, with
	// the index it reflects.
	ReadBarrier(ctx context.Context) (uint64, error)
	// ReadIndex is the region's commit index as the leader confirms it,
	// without waiting for this node to apply it.
	ReadIndex(ctx context.Context) (uint64, error)
	// WaitApplied returns once this node has applied idx.
	WaitApplied(ctx context.Context, idx uint64) error
	// AppliedIndex is the last index this node applied.
	AppliedIndex() uint64
}

// State is the read side of the state machine the service uses.
type State interface {
	Keyring() (*storagev1.Keyring, error)
	// KMSWraps is how many values a KMS key version has wrapped.
	KMSWraps(keyID string, version uint32) (uint64, error)
	Secret(ref string) (*storagev1.Secret, error)
	SecretValue(ref, versionID, stage string) (*storage.SecretValue, error)
	SecretVersions(ref string, includeDeprecated bool, maxResults int, nextToken string) (*storage.VersionPage, error)
	ListSecrets(q storage.Query) (*storage.Page, error)
	Secrets(fn func(*storagev1.Secret) bool) error
	RotationFunction(ref string) (*storagev1.RotationFunction, error)
	RotationFunctions() ([]*storagev1.RotationFunction, error)
	// Cross-region replication.
	FeedAck(dest string) uint64
	FeedGeneration() string
	FeedResync(dest string) (uint64, bool)
	FeedAfter(dest string, after uint64, limit int) (*storage.FeedBatch, error)
	FeedStatus(dest string) (storage.FeedStatus, error)
	RegionPeers() ([]*storagev1.RegionPeer, error)
	ReplicaPosition(source string) uint64
	ReplicaGeneration(source string) string
	ReplicaRejection(source, name string) string
	// Failover controls (fence, switchover).
	RegionControl() (*storagev1.RegionControl, error)
	FeedPendingSecrets(dest string, limit int) ([]string, error)
}

// Config is the service's configuration.
type Config struct {
	// Partition, Region and AccountID make up every ARN the region issues.
	Partition string
	Region    string
	AccountID string
	// MaintenanceInterval is how often the leader purges secrets whose
	// recovery window has ended.
	MaintenanceInterval time.Duration
	// AccessFlushInterval is how often a node proposes the last-accessed
	// days it has gathered.
	AccessFlushInterval time.Duration
	// SessionDuration is how long temporary credentials last when the
	// caller does not say; Min/MaxSessionDuration bound what it may ask.
	// Zero means DefaultSessionDuration, DefaultMin… and DefaultMax….
	SessionDuration    time.Duration
	MinSessionDuration time.Duration
	MaxSessionDuration time.Duration
	// Clock, when set, replaces the wall clock for every time the service
	// stamps on a command and reads schedules against (tests drive it).
	Clock func() time.Time
	// WebIdentityIssuers are the OpenID Connect issuers whose ID tokens
	// STS AssumeRoleWithWebIdentity accepts (webidentity.go).
	WebIdentityIssuers []WebIdentityIssuer
	// AccessReportInterval is how often, at most, a node receiving shipments
	// looks through its replicas for reads to report to their primary
	// regions (ReplicationStatus.LastAccessedDate); zero means 30 seconds.
	AccessReportInterval time.Duration
	// MemoryLock is how the keyring's unsealed material and the pairwise
	// replication keys are held: kms.LockRequired fails when they cannot be
	// locked in memory (cofferd's default), kms.LockBestEffort (the zero
	// value: tests, cofferd dev, allow_no_mlock) keeps them unlocked and
	// logs a warning.
	MemoryLock kms.LockMode
	// MaxReadWait bounds every wait a read makes for the region's log (the
	// read point, x-coffer-min-index), whatever the caller's deadline; zero
	// means DefaultMaxReadWait.
	MaxReadWait time.Duration
	// MaxVersionsPerSecret is the versions-per-secret quota this node
	// stamps on the commands it proposes (1 < n <= storage.MaxVersions);
	// zero means storage.MaxVersions, AWS's 100.
	MaxVersionsPerSecret int
	// WatchBuffer is how many changes a WatchSecrets stream may fall behind
	// before it is cut off with a resumable error; zero means
	// DefaultWatchBuffer.
	WatchBuffer int
	// KeyWrapLimit is how many values one version of a KMS key may wrap
	// before the leader gives the key new material; zero means
	// kms.WrapLimit, half of the 2^32 seals random 96-bit nonces allow.
	// Tests inject a small one.
	KeyWrapLimit uint64
}

// DefaultMaxReadWait is Config.MaxReadWait's default.
const DefaultMaxReadWait = 5 * time.Second

// DefaultConfig holds the service defaults.
func DefaultConfig() Config {
	return Config{
		Partition:           "aws",
		Region:              "us-east-1",
		AccountID:           "000000000000",
		MaintenanceInterval: time.Minute,
		AccessFlushInterval: time.Minute,
	}
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	switch {
	case !idPattern.MatchString(c.Partition):
		return fmt.Errorf("partition %q must be lower-case letters, digits and dashes", c.Partition)
	case !idPattern.MatchString(c.Region):
		return fmt.Errorf("region %q must be lower-case letters, digits and dashes, like us-east-1", c.Region)
	case !accountPattern.MatchString(c.AccountID):
		return fmt.Errorf("account id %q must be 12 digits", c.AccountID)
	case c.MaintenanceInterval <= 0 || c.AccessFlushInterval <= 0:
		return errors.New("maintenance and access flush intervals must be positive")
	case c.SessionDuration < 0 || c.MinSessionDuration < 0 || c.MaxSessionDuration < 0:
		return errors.New("session durations must not be negative")
	case c.MaxReadWait < 0:
		return errors.New("the maximum read wait must not be negative")
	case c.MaxVersionsPerSecret != 0 && (c.MaxVersionsPerSecret < storage.MinVersionsQuota || c.MaxVersionsPerSecret > storage.MaxVersions):
		return fmt.Errorf("the versions-per-secret quota %d must be between %d and %d", c.MaxVersionsPerSecret, storage.MinVersionsQuota, storage.MaxVersions)
	}
	for _, w := range c.WebIdentityIssuers {
		if err := w.Validate(); err != nil {
			return err
		}
	}
	if def, lo, hi := c.sessionBounds(); lo > def || def > hi {
		return fmt.Errorf("session durations must satisfy min (%v) <= default (%v) <= max (%v)", lo, def, hi)
	}
	return nil
}

var errKeyringNotReady = errors.New("keyring not initialised")

// Service implements the SecretsManagerService API on top of a replicated
// state machine. One Service backs both the gRPC API and the AWS JSON API.
type Service struct {
	cofferv1.UnimplementedSecretsManagerServiceServer

	cfg     Config
	rep     Replicator
	state   State
	root    *kms.LockedKey
	log     *slog.Logger
	now     func() time.Time
	keyring atomic.Pointer[openKeyring]
	access  *accessTracker

	// rotators are the built-in rotation functions, set before serving.
	rotators   map[string]rotation.Function
	httpClient *http.Client
	// pairwise caches the replication keys shared with paired regions.
	pairwise pairwiseCache
	// accessReports tracks replica reads reported to primary regions.
	accessReports accessReports
}

var _ cofferv1.SecretsManagerServiceServer = (*Service)(nil)

// New builds a Service. root is the region's root key, released by its seal
// and held in locked memory (kms.NewLockedKey); the Service uses it and
// never copies it.
func New(cfg Config, rep Replicator, state State, root *kms.LockedKey, log *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	now := func() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }
	if cfg.Clock != nil {
		clock := cfg.Clock
		now = func() time.Time { return clock().UTC().Truncate(time.Millisecond) }
	}
	return &Service{
		cfg:        cfg,
		rep:        rep,
		state:      state,
		root:       root,
		log:        log,
		now:        now,
		access:     newAccessTracker(),
		httpClient: newFunctionClient(),
	}, nil
}

// openKeyring is the unsealed keyring and the applied index it was last
// known current at.
type openKeyring struct {
	index uint64
	kr    *kms.Keyring
}

// keys returns the unsealed keyring, loading it from the state on first
// use and again whenever the stored keyring's revision changed (a key was
// created, changed or rotated). While the node's applied index has not
// moved, the cached one is current without a look at the state.
func (s *Service) keys() (*kms.Keyring, error) {
	index := s.rep.AppliedIndex()
	cached := s.keyring.Load()
	if cached != nil && cached.index == index {
		return cached.kr, nil
	}
	rec, err := s.state.Keyring()
	if err != nil {
		return nil, fmt.Errorf("load keyring: %w", err)
	}
	if rec == nil {
		return nil, errKeyringNotReady
	}
	if cached != nil && cached.kr.Revision() == rec.GetRevision() {
		s.keyring.Store(&openKeyring{index: index, kr: cached.kr})
		return cached.kr, nil
	}
	var k *kms.Keyring
	open := func() error {
		return s.root.Use(func(root []byte) error {
			k, err = kms.Open(root, rec, s.cfg.MemoryLock)
			return err
		})
	}
	err = open()
	// Each revision of the keyring (a key created, changed or rotated)
	// is unsealed into a locked region of its own; the ones it replaced
	// are released only once the garbage collector finds them
	// unreachable. When locked memory runs out, collect and try again
	// before failing.
	for try := 0; errors.Is(err, kms.ErrMemoryLock) && try < 3; try++ {
		runtime.GC()
		time.Sleep(time.Duration(try+1) * 10 * time.Millisecond) // cleanups run after the collection
		err = open()
	}
	if err != nil {
		return nil, fmt.Errorf("open keyring: %w", err)
	}
	if !k.Locked() {
		s.log.Warn("the keyring's key material is not locked in memory and may be swapped to disk; raise RLIMIT_MEMLOCK (LimitMEMLOCK in the systemd unit, --ulimit memlock for docker)")
	}
	s.keyring.Store(&openKeyring{index: index, kr: k})
	return k, nil
}

// EnsureKeyring creates the region's keyring if this node leads a region
// that has none yet, and loads it.
func (s *Service) EnsureKeyring(ctx context.Context) error {
	if _, err := s.keys(); !errors.Is(err, errKeyringNotReady) {
		return err
	}
	if !s.rep.IsLeader() {
		return errKeyringNotReady
	}
	var rec *storagev1.Keyring
	if err := s.root.Use(func(root []byte) (err error) {
		rec, err = kms.NewKeyring(root, s.now())
		return err
	}); err != nil {
		return fmt.Errorf("create keyring: %w", err)
	}
	if _, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_InitKeyring{InitKeyring: &raftv1.InitKeyring{Keyring: rec}}}); err != nil {
		return err
	}
	_, err := s.keys()
	return err
}

// Ready reports whether the service can serve requests (its keyring is loaded).
func (s *Service) Ready() bool {
	_, err := s.keys()
	return err == nil
}

// propose stamps cmd with the request id, the time and this node's
// versions-per-secret quota and commits it. A domain failure comes back as
// the error.
func (s *Service) propose(ctx context.Context, cmd *raftv1.Command) (*storage.Result, error) {
	cmd.Header = &raftv1.Header{RequestId: RequestID(ctx), Time: timestamppb.New(s.now()), MaxVersions: uint32(s.cfg.MaxVersionsPerSecret)}
	res, err := s.rep.Apply(ctx, cmd)
	if err != nil {
		return nil, err
	}
	noteIndex(ctx, res.Index)
	if res.Err != nil {
		return nil, res.Err
	}
	return res, nil
}

// liveSecret resolves a SecretId for a write: it must exist and not be
// scheduled for deletion. Apply checks again against the committed state.
func (s *Service) liveSecret(ctx context.Context, id string) (*storagev1.Secret, error) {
	sec, err := s.lookupForWrite(ctx, id)
	if err != nil {
		return nil, err
	}
	if sec.GetReplica() {
		return nil, replicaReadOnly(sec.GetPrimaryRegion())
	}
	if sec.GetDeletedDate() != nil {
		return nil, apiErr(TypeInvalidRequest, "You can't perform this operation on the secret because it was marked for deletion.")
	}
	return sec, nil
}

// sealVersion encrypts a new version's value for the secret with arn,
// under the key keyRef names, once the caller may use it
// (kms:GenerateDataKey) and it is enabled.
func (s *Service) sealVersion(ctx context.Context, kr *kms.Keyring, keyRef, name, arn, versionID string, kind storagev1.ValueKind, plain []byte) (*raftv1.NewVersion, error) {
	defer clear(plain)
	keyID, err := s.useKey(ctx, kr, keyRef, true)
	if err != nil {
		return nil, err
	}
	sealed, err := kr.Seal(keyID, name, arn, versionID, kind, plain)
	if err != nil {
		return nil, err
	}
	return &raftv1.NewVersion{VersionId: versionID, Value: sealed}, nil
}

func (s *Service) resolveKey(kr *kms.Keyring, ref string) (string, error) {
	id, err := kr.ResolveKey(ref)
	if errors.Is(err, kms.ErrKeyNotFound) {
		return "", apiErr(TypeInvalidParameter, "Secrets Manager can't find the specified KMS key: %s", ref)
	}
	return id, err
}

// useKey resolves the key keyRef names for Secrets Manager to use on the
// caller's behalf: to write (kms:GenerateDataKey) or read (kms:Decrypt) a
// version. As in AWS, the caller needs that permission on the key as well
// as access to the secret, and a disabled key or one pending deletion
// protects nothing until it is enabled again.
func (s *Service) useKey(ctx context.Context, kr *kms.Keyring, keyRef string, write bool) (string, error) {
	keyID, err := s.resolveKey(kr, keyRef)
	if err != nil && !write {
		// The key that sealed a stored value is gone (deleted after its
		// waiting period): what it protected can no longer be read.
		return "", apiErr(TypeDecryptionFailure, "Secrets Manager can't decrypt the protected secret text using the provided KMS key. The KMS key was deleted.")
	}
	if err != nil {
		return "", err
	}
	key := kr.Key(keyID)
	action := "kms:Decrypt"
	if write {
		action = "kms:GenerateDataKey"
	}
	if err := allowKeyUse(ctx, action, key); err != nil {
		return "", err
	}
	if state := keyState(key); state != keyStateEnabled {
		why := fmt.Sprintf("KMSInvalidStateException: %s is %s.", s.cfg.keyARN(keyID), map[string]string{
			keyStateDisabled: "disabled", keyStatePendingDeletion: "pending deletion"}[state])
		if write {
			return "", apiErr(TypeEncryptionFailure, "Secrets Manager can't encrypt the protected secret text using the provided KMS key. Check that the KMS key is available, enabled, and not in an invalid state. %s", why)
		}
		return "", apiErr(TypeDecryptionFailure, "Secrets Manager can't decrypt the protected secret text using the provided KMS key. %s", why)
	}
	return keyID, nil
}

// newARN picks the ARN of a new secret: the name plus a random 6-character
// suffix, so a recreated secret never reuses an old ARN.
func (s *Service) newARN(name string) (string, error) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	suffix := make([]byte, storage.ARNSuffixLength)
	for i := range suffix {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			return "", fmt.Errorf("arn suffix: %w", err)
		}
		suffix[i] = alphabet[n.Int64()]
	}
	return storage.SecretARN(s.cfg.Partition, s.cfg.Region, s.cfg.AccountID, name, string(suffix)), nil
}

// CreateSecret implements the AWS operation.
func (s *Service) CreateSecret(ctx context.Context, req *cofferv1.CreateSecretRequest) (*cofferv1.CreateSecretResponse, error) {
	if e := firstErr(validateName(req.GetName()), validateToken("clientRequestToken", req.GetClientRequestToken()),
		validateDescription(req.GetDescription()), validateKmsKeyRef(req.GetKmsKeyId()), validateTags(req.GetTags())); e != nil {
		return nil, e
	}
	if e := s.validateReplicaRegions(req.GetAddReplicaRegions()); e != nil {
		return nil, e
	}
	kind, plain, hasValue, verr := secretValue(req.SecretString, req.SecretBinary, req.SecretBinary != nil)
	if verr != nil {
		return nil, verr
	}
	kr, err := s.keys()
	if err != nil {
		return nil, err
	}
	if _, err := s.resolveKey(kr, req.GetKmsKeyId()); err != nil {
		return nil, err
	}
	// A retried CreateSecret must seal for the ARN the first attempt created.
	var arn string
	if existing, err := s.lookupForWrite(ctx, req.GetName()); err == nil && existing.GetName() == req.GetName() {
		arn = existing.GetArn()
	} else if arn, err = s.newARN(req.GetName()); err != nil {
		return nil, err
	}
	op := &raftv1.CreateSecret{
		Name:               req.GetName(),
		Arn:                arn,
		Description:        req.GetDescription(),
		KmsKeyId:           req.GetKmsKeyId(),
		Tags:               req.GetTags(),
		PrimaryRegion:      s.cfg.Region,
		ClientRequestToken: req.GetClientRequestToken(),
	}
	if hasValue {
		versionID := req.GetClientRequestToken()
		if versionID == "" {
			versionID = uuid.NewString()
		}
		if op.Version, err = s.sealVersion(ctx, kr, req.GetKmsKeyId(), req.GetName(), arn, versionID, kind, plain); err != nil {
			return nil, err
		}
	}
	res, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_CreateSecret{CreateSecret: op}})
	if err != nil {
		return nil, err
	}
	resp := &cofferv1.CreateSecretResponse{Arn: res.ARN, Name: res.Name, VersionId: res.VersionID}
	if len(req.GetAddReplicaRegions()) > 0 {
		// A second command: the log has no combined op, and a retry of the
		// whole call repeats both harmlessly (replicas already there are kept).
		if err := s.setReplicas(ctx, res.ARN, replicaConfigs(req.GetAddReplicaRegions(), req.GetForceOverwriteReplicaSecret()), nil); err != nil {
			return nil, err
		}
		after, err := s.state.Secret(res.ARN)
		if err != nil {
			return nil, err
		}
		resp.ReplicationStatus = s.replicationStatus(after)
	}
	return resp, nil
}

// PutSecretValue implements the AWS operation.
func (s *Service) PutSecretValue(ctx context.Context, req *cofferv1.PutSecretValueRequest) (*cofferv1.PutSecretValueResponse, error) {
	if e := firstErr(validateSecretID(req.GetSecretId()), validateToken("clientRequestToken", req.GetClientRequestToken()),
		validateStages(req.GetVersionStages())); e != nil {
		return nil, e
	}
	kind, plain, hasValue, verr := secretValue(req.SecretString, req.SecretBinary, req.SecretBinary != nil)
	if verr != nil {
		return nil, verr
	}
	if !hasValue {
		return nil, apiErr(TypeInvalidRequest, "You must provide either SecretString or SecretBinary.")
	}
	sec, err := s.liveSecret(ctx, req.GetSecretId())
	if err != nil {
		return nil, err
	}
	kr, err := s.keys()
	if err != nil {
		return nil, err
	}
	versionID := req.GetClientRequestToken()
	if versionID == "" {
		versionID = uuid.NewString()
	}
	nv, err := s.sealVersion(ctx, kr, sec.GetKmsKeyId(), sec.GetName(), storage.ValueARN(sec), versionID, kind, plain)
	if err != nil {
		return nil, err
	}
	res, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_PutSecretValue{PutSecretValue: &raftv1.PutSecretValue{
		Arn: sec.GetArn(), Version: nv, VersionStages: req.GetVersionStages(),
	}}})
	if err != nil {
		return nil, err
	}
	return &cofferv1.PutSecretValueResponse{Arn: res.ARN, Name: res.Name, VersionId: res.VersionID, VersionStages: res.Stages}, nil
}

// UpdateSecret implements the AWS operation.
func (s *Service) UpdateSecret(ctx context.Context, req *cofferv1.UpdateSecretRequest) (*cofferv1.UpdateSecretResponse, error) {
	if e := firstErr(validateSecretID(req.GetSecretId()), validateToken("clientRequestToken", req.GetClientRequestToken()),
		validateDescription(req.GetDescription()), validateKmsKeyRef(req.GetKmsKeyId())); e != nil {
		return nil, e
	}
	kind, plain, hasValue, verr := secretValue(req.SecretString, req.SecretBinary, req.SecretBinary != nil)
	if verr != nil {
		return nil, verr
	}
	sec, err := s.liveSecret(ctx, req.GetSecretId())
	if err != nil {
		return nil, err
	}
	kr, err := s.keys()
	if err != nil {
		return nil, err
	}
	keyRef := sec.GetKmsKeyId()
	if req.KmsKeyId != nil {
		if _, err := s.resolveKey(kr, req.GetKmsKeyId()); err != nil {
			return nil, err
		}
		keyRef = req.GetKmsKeyId()
	}
	op := &raftv1.UpdateSecret{Arn: sec.GetArn(), Description: req.Description, KmsKeyId: req.KmsKeyId}
	if req.KmsKeyId != nil {
		if op.Reencrypted, err = s.reencrypt(ctx, kr, sec, req.GetKmsKeyId()); err != nil {
			return nil, err
		}
	}
	if hasValue {
		versionID := req.GetClientRequestToken()
		if versionID == "" {
			versionID = uuid.NewString()
		}
		if op.Version, err = s.sealVersion(ctx, kr, keyRef, sec.GetName(), storage.ValueARN(sec), versionID, kind, plain); err != nil {
			return nil, err
		}
	}
	res, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_UpdateSecret{UpdateSecret: op}})
	if err != nil {
		return nil, err
	}
	return &cofferv1.UpdateSecretResponse{Arn: res.ARN, Name: res.Name, VersionId: res.VersionID}, nil
}

// reencrypt seals the secret's AWSCURRENT, AWSPENDING and AWSPREVIOUS
// values again under the key keyRef names, as AWS does when UpdateSecret
// changes the KmsKeyId; other versions stay under their key. Reading each
// needs kms:Decrypt on its key and writing kms:GenerateDataKey on the new
// one, for the caller.
func (s *Service) reencrypt(ctx context.Context, kr *kms.Keyring, sec *storagev1.Secret, keyRef string) ([]*raftv1.NewVersion, error) {
	newKey, err := s.useKey(ctx, kr, keyRef, true)
	if err != nil {
		return nil, err
	}
	var out []*raftv1.NewVersion
	for _, v := range sec.GetVersions() {
		staged := slices.ContainsFunc(v.GetStages(), func(st string) bool {
			return st == storage.StageCurrent || st == storage.StagePending || st == storage.StagePrevious
		})
		if !staged || !storage.HasValue(v) || v.GetKmsKeyId() == newKey {
			continue
		}
		sv, err := s.state.SecretValue(sec.GetArn(), v.GetVersionId(), "")
		if err != nil {
			return nil, err
		}
		if _, err := s.useKey(ctx, kr, sv.Value.GetKmsKeyId(), false); err != nil {
			return nil, err
		}
		arn := storage.ValueARN(sec)
		plain, err := kr.Unseal(sv.Value, arn, v.GetVersionId())
		if err != nil {
			return nil, err
		}
		sealed, err := kr.Seal(newKey, sec.GetName(), arn, v.GetVersionId(), sv.Value.GetKind(), plain)
		clear(plain)
		if err != nil {
			return nil, err
		}
		out = append(out, &raftv1.NewVersion{VersionId: v.GetVersionId(), Value: sealed})
	}
	return out, nil
}

// UpdateSecretVersionStage implements the AWS operation.
func (s *Service) UpdateSecretVersionStage(ctx context.Context, req *cofferv1.UpdateSecretVersionStageRequest) (*cofferv1.UpdateSecretVersionStageResponse, error) {
	if e := firstErr(validateSecretID(req.GetSecretId()), validateStage("versionStage", req.GetVersionStage()),
		validateToken("removeFromVersionId", req.GetRemoveFromVersionId()), validateToken("moveToVersionId", req.GetMoveToVersionId())); e != nil {
		return nil, e
	}
	sec, err := s.liveSecret(ctx, req.GetSecretId())
	if err != nil {
		return nil, err
	}
	res, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_UpdateVersionStage{UpdateVersionStage: &raftv1.UpdateVersionStage{
		Arn: sec.GetArn(), VersionStage: req.GetVersionStage(),
		RemoveFromVersionId: req.GetRemoveFromVersionId(), MoveToVersionId: req.GetMoveToVersionId(),
	}}})
	if err != nil {
		return nil, err
	}
	return &cofferv1.UpdateSecretVersionStageResponse{Arn: res.ARN, Name: res.Name}, nil
}

// DeleteSecret implements the AWS operation.
func (s *Service) DeleteSecret(ctx context.Context, req *cofferv1.DeleteSecretRequest) (*cofferv1.DeleteSecretResponse, error) {
	if e := validateSecretID(req.GetSecretId()); e != nil {
		return nil, e
	}
	force := req.GetForceDeleteWithoutRecovery()
	if force && req.RecoveryWindowInDays != nil {
		return nil, apiErr(TypeInvalidParameter, "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.")
	}
	window := int64(30)
	if req.RecoveryWindowInDays != nil {
		window = req.GetRecoveryWindowInDays()
		if window < 7 || window > 30 {
			return nil, apiErr(TypeInvalidParameter, "The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).")
		}
	}
	sec, err := s.lookupForWrite(ctx, req.GetSecretId())
	if errors.Is(err, storage.ErrSecretNotFound) && force {
		// AWS answers a forced delete of a missing secret with success, so
		// cleanup scripts are idempotent, and as if the secret existed:
		// with an ARN and a name.
		return s.deletedAnswer(req.GetSecretId())
	}
	if err != nil {
		return nil, err
	}
	if sec.GetReplica() {
		return nil, replicaReadOnly(sec.GetPrimaryRegion())
	}
	res, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_DeleteSecret{DeleteSecret: &raftv1.DeleteSecret{
		Arn: sec.GetArn(), RecoveryWindowDays: window, Force: force,
	}}})
	if err != nil {
		return nil, err
	}
	return &cofferv1.DeleteSecretResponse{Arn: res.ARN, Name: res.Name, DeletionDate: timestamppb.New(res.DeletionDate)}, nil
}

// deletedAnswer is a forced delete's answer for a secret that does not
// exist: the ARN given, or one built for the name given, and its name.
func (s *Service) deletedAnswer(id string) (*cofferv1.DeleteSecretResponse, error) {
	out := &cofferv1.DeleteSecretResponse{Arn: id, Name: id, DeletionDate: timestamppb.New(s.now())}
	if p, ok := storage.ParseARN(id); ok {
		out.Name = p.Rest
		if name, full := storage.NameFromFullARN(id); full {
			out.Name = name
		} else {
			// A partial ARN: complete it as a full one would read.
			arn, err := s.newARN(p.Rest)
			if err != nil {
				return nil, err
			}
			out.Arn = arn
		}
		return out, nil
	}
	arn, err := s.newARN(id)
	if err != nil {
		return nil, err
	}
	out.Arn = arn
	return out, nil
}

// RestoreSecret implements the AWS operation.
func (s *Service) RestoreSecret(ctx context.Context, req *cofferv1.RestoreSecretRequest) (*cofferv1.RestoreSecretResponse, error) {
	if e := validateSecretID(req.GetSecretId()); e != nil {
		return nil, e
	}
	sec, err := s.lookupForWrite(ctx, req.GetSecretId())
	if err != nil {
		return nil, err
	}
	if sec.GetReplica() {
		return nil, replicaReadOnly(sec.GetPrimaryRegion())
	}
	res, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_RestoreSecret{RestoreSecret: &raftv1.RestoreSecret{Arn: sec.GetArn()}}})
	if err != nil {
		return nil, err
	}
	return &cofferv1.RestoreSecretResponse{Arn: res.ARN, Name: res.Name}, nil
}

// TagResource implements the AWS operation.
func (s *Service) TagResource(ctx context.Context, req *cofferv1.TagResourceRequest) (*cofferv1.TagResourceResponse, error) {
	if e := firstErr(validateSecretID(req.GetSecretId()), validateTags(req.GetTags())); e != nil {
		return nil, e
	}
	sec, err := s.liveSecret(ctx, req.GetSecretId())
	if err != nil {
		return nil, err
	}
	if _, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_TagResource{TagResource: &raftv1.TagResource{
		Arn: sec.GetArn(), Tags: req.GetTags(),
	}}}); err != nil {
		return nil, err
	}
	return &cofferv1.TagResourceResponse{}, nil
}

// UntagResource implements the AWS operation.
func (s *Service) UntagResource(ctx context.Context, req *cofferv1.UntagResourceRequest) (*cofferv1.UntagResourceResponse, error) {
	if e := firstErr(validateSecretID(req.GetSecretId()), validateTagKeys(req.GetTagKeys())); e != nil {
		return nil, e
	}
	sec, err := s.liveSecret(ctx, req.GetSecretId())
	if err != nil {
		return nil, err
	}
	if _, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_UntagResource{UntagResource: &raftv1.UntagResource{
		Arn: sec.GetArn(), TagKeys: req.GetTagKeys(),
	}}}); err != nil {
		return nil, err
	}
	return &cofferv1.UntagResourceResponse{}, nil
}

func firstErr(errs ...*APIError) *APIError {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// DerivedKey returns a key derived from the region's keyring for purpose
// (such as "audit-params"); every node of the region derives the same one.
func (s *Service) DerivedKey(purpose string) ([]byte, error) {
	kr, err := s.keys()
	if err != nil {
		return nil, err
	}
	return kr.DeriveKey(purpose)
}
