package server

import (
	"sort"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
)

// accessTracker gathers the days on which secrets were read, so that
// LastAccessedDate (day granularity, as in AWS) costs one Raft write per
// secret per day per node rather than one per read.
type accessTracker struct {
	mu      sync.Mutex
	pending map[string]map[string]time.Time // arn → version id → day
}

func newAccessTracker() *accessTracker {
	return &accessTracker{pending: map[string]map[string]time.Time{}}
}

// record notes a read unless the stored dates already show this day.
func (a *accessTracker) record(sec *storagev1.Secret, v *storagev1.Version, now time.Time) {
	day := utcDay(now)
	if !before(sec.GetLastAccessedDate(), day) && !before(v.GetLastAccessedDate(), day) {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	m := a.pending[sec.GetArn()]
	if m == nil {
		m = map[string]time.Time{}
		a.pending[sec.GetArn()] = m
	}
	m[v.GetVersionId()] = day
}

// seen returns the later of stored and the day this node saw a read of
// the secret (versionID "") or of one version that is not flushed yet, so
// the node that served a read shows it at once, as AWS does the same day.
func (a *accessTracker) seen(stored *timestamppb.Timestamp, arn, versionID string) *timestamppb.Timestamp {
	a.mu.Lock()
	defer a.mu.Unlock()
	var day time.Time
	for id, d := range a.pending[arn] {
		if (versionID == "" || id == versionID) && d.After(day) {
			day = d
		}
	}
	if day.IsZero() || !before(stored, day) {
		return stored
	}
	return timestamppb.New(day)
}

func before(ts *timestamppb.Timestamp, day time.Time) bool {
	return ts == nil || ts.AsTime().Before(day)
}

// drain hands over what was gathered, as RecordAccess entries in a stable
// order. A failed flush loses nothing that matters: the stored date stays
// old, so the next read records it again.
func (a *accessTracker) drain() []*raftv1.AccessEntry {
	a.mu.Lock()
	pending := a.pending
	a.pending = map[string]map[string]time.Time{}
	a.mu.Unlock()
	var out []*raftv1.AccessEntry
	for arn, versions := range pending {
		e := &raftv1.AccessEntry{Arn: arn}
		var latest time.Time
		for id, day := range versions {
			e.VersionIds = append(e.VersionIds, id)
			if day.After(latest) {
				latest = day
			}
		}
		sort.Strings(e.VersionIds)
		e.Day = timestamppb.New(latest)
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetArn() < out[j].GetArn() })
	return out
}

func utcDay(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}
