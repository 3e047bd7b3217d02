package storage

import (
	bolt "go.etcd.io/bbolt"
)

// DBSize reports the state file's size and the bytes its pages in use take:
// the difference is free pages, reused by later writes but not returned to
// the file system (fragmentation, which a snapshot restore compacts).
func (s *Store) DBSize() (size, inUse int64, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		size = tx.Size()
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	s.mu.RLock()
	st := s.db.Stats()
	page := int64(s.db.Info().PageSize)
	s.mu.RUnlock()
	inUse = size - int64(st.FreePageN+st.PendingPageN)*page
	return size, max(inUse, 0), nil
}
