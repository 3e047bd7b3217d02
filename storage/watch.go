package storage

import (
	"context"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
)

// Change notification (WatchSecrets). Apply notes, for each command that
// succeeded, every secret record it wrote or removed (putSecret,
// removeSecret); once the batch's transaction has committed, the Store
// publishes those changes, stamped with the command's Raft index, to an
// in-memory window that watchers read from. Nothing here is part of the
// replicated state: every node derives the same events from the same log,
// so a watcher may resume on any node of the region whose window still
// holds its position. Publishing never waits for a watcher.

// ChangeKind is what a command did to a secret, as a watcher sees it.
type ChangeKind string

// The change kinds, one per kind of secret-changing command; each entry of
// the command table (commands.go) names its own.
const (
	ChangeCreated      ChangeKind = "CREATED"       // CreateSecret
	ChangeVersionAdded ChangeKind = "VERSION_ADDED" // PutSecretValue
	ChangeUpdated      ChangeKind = "UPDATED"       // UpdateSecret (description, key, value)
	ChangeStageMoved   ChangeKind = "STAGE_MOVED"   // UpdateSecretVersionStage
	ChangeDeleted      ChangeKind = "DELETED"       // DeleteSecret (scheduled or forced)
	ChangeRestored     ChangeKind = "RESTORED"      // RestoreSecret
	ChangeMetadata     ChangeKind = "METADATA"      // tags, resource policy
	ChangePurged       ChangeKind = "PURGED"        // the recovery window ended
	ChangeRotation     ChangeKind = "ROTATION"      // rotation configured, started, stepped, cancelled
	ChangeReplication  ChangeKind = "REPLICATION"   // the replica set changed
	ChangeReplicated   ChangeKind = "REPLICATED"    // a replica region applied its primary's change
	ChangePromoted     ChangeKind = "PROMOTED"      // a replica became a primary
)

// unwatched is the change kind of a command table entry (commands.go)
// whose secret writes no watcher is told about: bookkeeping such as access
// dates and replication status messages, or a command that writes no
// secret.
const unwatched ChangeKind = ""

// Change is one secret changed by one applied command.
type Change struct {
	// Index is the Raft index of the command; several changes (a shipment
	// to a replica region, a promotion) may share one.
	Index uint64
	Kind  ChangeKind
	// Time is the command's time (its header), not when it was applied.
	Time time.Time
	Name string
	ARN  string
	// Secret is the record after the command, or the last one before it
	// was removed (Gone). Shared by every watcher: read only.
	Secret *storagev1.Secret
	Gone   bool
}

// CurrentVersionID is the version carrying AWSCURRENT after the change, or "".
func (c Change) CurrentVersionID() string {
	if c.Gone {
		return ""
	}
	for _, v := range c.Secret.GetVersions() {
		if slices.Contains(v.GetStages(), StageCurrent) {
			return v.GetVersionId()
		}
	}
	return ""
}

// touch notes a secret record the running command wrote (or removed).
func (t *txn) touch(s *storagev1.Secret, gone bool) {
	if t.touched == nil {
		t.touched = map[string]touchedSecret{}
	}
	prev, seen := t.touched[s.GetName()]
	if gone {
		t.touched[s.GetName()] = touchedSecret{last: proto.CloneOf(s), gone: true}
		return
	}
	if !seen || prev.gone {
		t.touched[s.GetName()] = touchedSecret{}
	}
}

type touchedSecret struct {
	last *storagev1.Secret // the record removed, when gone
	gone bool
}

// noteChanges turns what the command just applied wrote into changes of
// kind (its command table entry's),
// read back from the transaction (so a record mutated after putSecret is
// seen as stored).
func (t *txn) noteChanges(index uint64, now time.Time, kind ChangeKind) {
	touched := t.touched
	t.touched = nil
	if kind == unwatched || len(touched) == 0 {
		return
	}
	names := make([]string, 0, len(touched))
	for n := range touched {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		c := Change{Index: index, Kind: kind, Time: now, Name: n}
		if ts := touched[n]; ts.gone {
			c.Secret, c.Gone = ts.last, true
		} else if c.Secret = t.secret(n); c.Secret == nil {
			continue
		}
		c.ARN = c.Secret.GetArn()
		t.changes = append(t.changes, c)
	}
}

// DefaultChangeWindow is how many changes a Store keeps for watchers to
// resume from (SetChangeWindow).
const DefaultChangeWindow = 16384

// changeLog is the window of recent changes. Positions (seq) count changes
// published since the Store opened; the window holds [first, next).
type changeLog struct {
	// mu: publish and restart write; streams only read, so hundreds of
	// them waking at once do not queue behind one another (nor, long,
	// ahead of the next publish).
	mu     sync.RWMutex
	ring   []Change
	first  uint64 // seq of the oldest change held
	next   uint64 // seq the next change gets
	floor  uint64 // every change with Index > floor is held (or not yet published)
	head   uint64 // the last index published (changes or not)
	epoch  uint64 // bumped when the window restarts (snapshot install)
	wake   chan struct{}
	window int
}

func newChangeLog(applied uint64, window int) *changeLog {
	if window <= 0 {
		window = DefaultChangeWindow
	}
	return &changeLog{floor: applied, head: applied, wake: make(chan struct{}), window: window}
}

func (l *changeLog) at(seq uint64) *Change { return &l.ring[seq%uint64(len(l.ring))] }

// publish appends a committed segment's changes and advances the head to
// through. It never blocks on a watcher: it copies into the window and
// wakes whoever waits.
func (l *changeLog) publish(changes []Change, through uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ring == nil && len(changes) > 0 {
		l.ring = make([]Change, l.window)
	}
	for _, c := range changes {
		if l.next-l.first == uint64(len(l.ring)) {
			l.floor = max(l.floor, l.at(l.first).Index)
			*l.at(l.first) = Change{}
			l.first++
		}
		*l.at(l.next) = c
		l.next++
	}
	if through > l.head {
		l.head = through
	}
	close(l.wake)
	l.wake = make(chan struct{})
}

// restart empties the window at index (a snapshot was installed: the
// changes it brought are unknown) and makes every open stream resynchronise.
func (l *changeLog) restart(index uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for s := l.first; s < l.next; s++ {
		*l.at(s) = Change{}
	}
	l.first = l.next
	l.floor, l.head = index, index
	l.epoch++
	close(l.wake)
	l.wake = make(chan struct{})
}

// ChangeStream reads the changes after a position. One goroutine reads it
// (Next); Lag and Changed may be called from another.
type ChangeStream struct {
	log    *changeLog
	epoch  uint64
	after  uint64 // deliver changes with Index > after
	start  uint64
	mu     sync.Mutex
	cursor uint64 // next seq to read
}

// WatchChanges opens a stream of the changes applied after index after;
// 0 means from now. It fails with ErrWatchCompacted when the window no
// longer holds every change after it (it was trimmed, a snapshot was
// installed since, or this node opened its state after it): the caller
// must reread the secrets it cares about and watch from now.
func (s *Store) WatchChanges(after uint64) (*ChangeStream, error) {
	l := s.changes
	l.mu.RLock()
	defer l.mu.RUnlock()
	if after == 0 {
		return &ChangeStream{log: l, epoch: l.epoch, after: l.head, start: l.head, cursor: l.next}, nil
	}
	if after < l.floor {
		return nil, ErrWatchCompacted
	}
	cur := l.next
	for seq := l.first; seq < l.next; seq++ {
		if l.at(seq).Index > after {
			cur = seq
			break
		}
	}
	return &ChangeStream{log: l, epoch: l.epoch, after: after, start: after, cursor: cur}, nil
}

// ChangeHead is the last index this node published to watchers.
func (s *Store) ChangeHead() uint64 {
	s.changes.mu.RLock()
	defer s.changes.mu.RUnlock()
	return s.changes.head
}

// SetChangeWindow sets how many changes the Store keeps for resuming
// watchers (DefaultChangeWindow). Call it before anything is applied.
func (s *Store) SetChangeWindow(n int) {
	s.changes.mu.Lock()
	defer s.changes.mu.Unlock()
	if n > 0 && s.changes.ring == nil {
		s.changes.window = n
	}
}

// Next waits until changes after the stream's position are published (or
// ctx ends) and returns them, with the index through which the stream has
// now seen everything: a watcher that resumes from through misses nothing
// and repeats nothing. It fails with ErrWatchCompacted when the window
// moved past the stream's position (see WatchChanges).
func (w *ChangeStream) Next(ctx context.Context) (out []Change, through uint64, err error) {
	for {
		l := w.log
		l.mu.RLock()
		if w.epoch != l.epoch || w.cursor < l.first {
			l.mu.RUnlock()
			return nil, 0, ErrWatchCompacted
		}
		w.mu.Lock()
		for ; w.cursor < l.next; w.cursor++ {
			if c := *l.at(w.cursor); c.Index > w.after {
				out = append(out, c)
			}
		}
		w.mu.Unlock()
		advanced := l.head > w.after
		if advanced {
			w.after = l.head
		}
		through, wake := w.after, l.wake
		l.mu.RUnlock()
		if advanced {
			return out, through, nil
		}
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-wake:
		}
	}
}

// Start is the index the stream started after.
func (w *ChangeStream) Start() uint64 { return w.start }

// Lag is how many published changes the stream has not yet read.
func (w *ChangeStream) Lag() uint64 {
	w.log.mu.RLock()
	next := w.log.next
	w.log.mu.RUnlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	return next - w.cursor
}

// Changed returns a channel closed at the next publish.
func (w *ChangeStream) Changed() <-chan struct{} {
	w.log.mu.RLock()
	defer w.log.mu.RUnlock()
	return w.log.wake
}
