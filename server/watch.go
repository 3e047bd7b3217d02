package server

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/storage"
)

// WatchSecrets: the changes Apply published on this node (storage's change
// window), filtered by the request's selection and, secret by secret, by
// what the caller may list. A stream reads the shared window at its own
// pace; one that falls WatchBuffer changes behind (a client not reading)
// is cut off with a resumable error, so no client holds memory or slows
// Apply.

// DefaultWatchBuffer is Config.WatchBuffer's default.
const DefaultWatchBuffer = 1024

// watchProgressInterval is how often, at most, a stream whose changes were
// all filtered out is told the index it has reached, so that it resumes
// from there rather than from its last event.
const watchProgressInterval = time.Second

// watchLagCheck is how often a stream's lag is compared with WatchBuffer.
const watchLagCheck = 100 * time.Millisecond

// watchChunk bounds the events of one response.
const watchChunk = 256

// ChangeSource is the change window a node's state serves WatchSecrets from.
type ChangeSource interface {
	WatchChanges(after uint64) (*storage.ChangeStream, error)
}

// The watch's error metadata (ErrorInfo): WatchErrorKey is "resync" or
// "overflow"; an overflow names the index to resume after.
const (
	WatchErrorKey       = "watch"
	WatchResync         = "resync"
	WatchOverflow       = "overflow"
	WatchResumeIndexKey = "resume_index"
)

func errWatchResync(after uint64) *APIError {
	return &APIError{Type: TypePreconditionNotMet,
		Message:  "The watch can't resume after index " + strconv.FormatUint(after, 10) + ": this node no longer holds the changes after it. Reread the secrets you cache, then watch from index 0.",
		Metadata: map[string]string{WatchErrorKey: WatchResync}}
}

func errWatchOverflow(limit int, resume uint64) *APIError {
	r := strconv.FormatUint(resume, 10)
	return &APIError{Type: TypeLimitExceeded,
		Message:  "The watch fell more than " + strconv.Itoa(limit) + " changes behind and was cut off; resume with after_index " + r + ".",
		Metadata: map[string]string{WatchErrorKey: WatchOverflow, WatchResumeIndexKey: r}}
}

// watchSelection is what a WatchSecrets request selects.
type watchSelection struct {
	ids, prefixes []string
	tags          []*cofferv1.WatchTag
}

func newWatchSelection(req *cofferv1.WatchSecretsRequest) (*watchSelection, error) {
	switch {
	case len(req.GetSecretIds()) > 100:
		return nil, validationErr("secretIds", "Member must have length less than or equal to 100")
	case len(req.GetNamePrefixes()) > 20:
		return nil, validationErr("namePrefixes", "Member must have length less than or equal to 20")
	case len(req.GetTags()) > 20:
		return nil, validationErr("tags", "Member must have length less than or equal to 20")
	}
	for _, id := range req.GetSecretIds() {
		if id == "" || len(id) > 2048 {
			return nil, validationErr("secretIds", "Member must have length between 1 and 2048")
		}
	}
	for _, p := range req.GetNamePrefixes() {
		if p == "" || len(p) > 512 {
			return nil, validationErr("namePrefixes", "Member must have length between 1 and 512")
		}
	}
	for _, t := range req.GetTags() {
		if t.GetKey() == "" || len(t.GetKey()) > 128 || len(t.GetValue()) > 256 {
			return nil, validationErr("tags", "Member key must have length between 1 and 128 and value at most 256")
		}
	}
	return &watchSelection{ids: req.GetSecretIds(), prefixes: req.GetNamePrefixes(), tags: req.GetTags()}, nil
}

func (w *watchSelection) match(c *storage.Change) bool {
	named := len(w.ids) == 0 && len(w.prefixes) == 0
	if !named {
		named = slices.ContainsFunc(w.ids, func(id string) bool { return id == c.Name || id == c.ARN }) ||
			slices.ContainsFunc(w.prefixes, func(p string) bool { return strings.HasPrefix(c.Name, p) })
	}
	if !named {
		return false
	}
	for _, want := range w.tags {
		if !slices.ContainsFunc(c.Secret.GetTags(), func(t *cofferv1.Tag) bool {
			return t.GetKey() == want.GetKey() && t.GetValue() == want.GetValue()
		}) {
			return false
		}
	}
	return true
}

var eventKinds = map[storage.ChangeKind]cofferv1.SecretEventKind{
	storage.ChangeCreated:      cofferv1.SecretEventKind_SECRET_EVENT_KIND_CREATED,
	storage.ChangeVersionAdded: cofferv1.SecretEventKind_SECRET_EVENT_KIND_VERSION_ADDED,
	storage.ChangeUpdated:      cofferv1.SecretEventKind_SECRET_EVENT_KIND_UPDATED,
	storage.ChangeStageMoved:   cofferv1.SecretEventKind_SECRET_EVENT_KIND_STAGE_MOVED,
	storage.ChangeDeleted:      cofferv1.SecretEventKind_SECRET_EVENT_KIND_DELETED,
	storage.ChangeRestored:     cofferv1.SecretEventKind_SECRET_EVENT_KIND_RESTORED,
	storage.ChangeMetadata:     cofferv1.SecretEventKind_SECRET_EVENT_KIND_METADATA,
	storage.ChangePurged:       cofferv1.SecretEventKind_SECRET_EVENT_KIND_PURGED,
	storage.ChangeRotation:     cofferv1.SecretEventKind_SECRET_EVENT_KIND_ROTATION,
	storage.ChangeReplication:  cofferv1.SecretEventKind_SECRET_EVENT_KIND_REPLICATION,
	storage.ChangeReplicated:   cofferv1.SecretEventKind_SECRET_EVENT_KIND_REPLICATED,
	storage.ChangePromoted:     cofferv1.SecretEventKind_SECRET_EVENT_KIND_PROMOTED,
}

func secretEvent(c *storage.Change) *cofferv1.SecretEvent {
	return &cofferv1.SecretEvent{
		Index: c.Index, Kind: eventKinds[c.Kind], Name: c.Name, Arn: c.ARN, Time: timestamppb.New(c.Time),
		CurrentVersionId: c.CurrentVersionID(), Deleted: c.Gone || c.Secret.GetDeletedDate() != nil,
	}
}

// WatchAPI serves WatchService from a Service's state.
type WatchAPI struct {
	cofferv1.UnimplementedWatchServiceServer
	svc *Service
}

// NewWatchAPI returns the WatchService of svc.
func NewWatchAPI(svc *Service) *WatchAPI { return &WatchAPI{svc: svc} }

// WatchSecrets implements the streaming operation (see watch.proto).
func (a *WatchAPI) WatchSecrets(req *cofferv1.WatchSecretsRequest, stream grpc.ServerStreamingServer[cofferv1.WatchSecretsResponse]) error {
	return a.svc.watchSecrets(req, stream)
}

func (s *Service) watchSecrets(req *cofferv1.WatchSecretsRequest, stream grpc.ServerStreamingServer[cofferv1.WatchSecretsResponse]) error {
	sel, err := newWatchSelection(req)
	if err != nil {
		return err
	}
	src, ok := s.state.(ChangeSource)
	if !ok {
		return apiErr(TypeUnsupportedOperation, "This server's state keeps no change window to watch.")
	}
	w, err := src.WatchChanges(req.GetAfterIndex())
	if errors.Is(err, storage.ErrWatchCompacted) {
		return errWatchResync(req.GetAfterIndex())
	} else if err != nil {
		return err
	}
	if err := stream.Send(&cofferv1.WatchSecretsResponse{Index: w.Start()}); err != nil {
		return err
	}
	limit := s.cfg.WatchBuffer
	if limit <= 0 {
		limit = DefaultWatchBuffer
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	var sent atomic.Uint64
	var sending atomic.Bool // the sender is inside a Send
	sent.Store(w.Start())
	// The sends run beside this loop: a Send blocked on a client that does
	// not read holds the stream's position still, the lag grows, and
	// returning here ends the stream (which unblocks the Send).
	done := make(chan error, 1)
	go func() { done <- s.watchSend(ctx, w, sel, stream, &sent, &sending) }()
	// The lag is checked on a tick rather than at every publish: a wake-up
	// per publish per stream would cost hundreds of idle streams CPU that
	// the writes need.
	tick := time.NewTicker(watchLagCheck)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		// Only a stream stuck in a Send is the client's doing; one between
		// sends is about to read everything published.
		if lag := w.Lag(); sending.Load() && lag > uint64(limit) {
			s.log.Info("watch cut off: the client fell behind", "behind", lag, "resume_index", sent.Load())
			return errWatchOverflow(limit, sent.Load())
		}
	}
}

// watchSend reads the stream's changes and sends those the caller selected
// and may list, then the index reached; sent is the index a client that
// reconnects resumes from.
func (s *Service) watchSend(ctx context.Context, w *storage.ChangeStream, sel *watchSelection, stream grpc.ServerStreamingServer[cofferv1.WatchSecretsResponse], sent *atomic.Uint64, sending *atomic.Bool) error {
	filter := secretFilterFrom(ctx)
	send := func(m *cofferv1.WatchSecretsResponse) error {
		sending.Store(true)
		defer sending.Store(false)
		return stream.Send(m)
	}
	lastSend := time.Now()
	for {
		changes, through, err := w.Next(ctx)
		if errors.Is(err, storage.ErrWatchCompacted) {
			return errWatchResync(sent.Load())
		} else if err != nil {
			return err
		}
		var events []*cofferv1.SecretEvent
		for i := range changes {
			c := &changes[i]
			if !sel.match(c) {
				continue
			}
			if filter != nil && filter.AllowSecret(SecretAction("ListSecrets"), c.ARN, c.Secret) != nil {
				continue
			}
			events = append(events, secretEvent(c))
		}
		if len(events) == 0 && time.Since(lastSend) < watchProgressInterval {
			continue
		}
		for len(events) > watchChunk {
			// A chunk ends before an index it does not send all of.
			chunk := events[:watchChunk]
			idx := chunk[len(chunk)-1].GetIndex()
			if events[watchChunk].GetIndex() == idx {
				idx--
			}
			if err := send(&cofferv1.WatchSecretsResponse{Events: chunk, Index: idx}); err != nil {
				return err
			}
			sent.Store(idx)
			events = events[watchChunk:]
		}
		if err := send(&cofferv1.WatchSecretsResponse{Events: events, Index: through}); err != nil {
			return err
		}
		sent.Store(through)
		lastSend = time.Now()
	}
}
