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
	"sync/atomic"
	"time"

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
