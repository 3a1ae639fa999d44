package hostabi

import (
	"sync"
	"time"

	"github.com/safeclose/safeclose/hostabi/abi"
)

// kvStore is a tenant's small in-memory key/value store, shared by that
// tenant's plugins and by no one else. It is bounded (abi.MaxKVEntries of
// at most abi.MaxKVKey + abi.MaxKVValue bytes) and does not survive a
// restart: it is for caches and counters, not for records.
type kvStore struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]kvEntry
}

type kvEntry struct {
	val []byte
	exp time.Time // zero: no expiry
}

func newKVStore(now func() time.Time) *kvStore {
	return &kvStore{now: now, m: map[string]kvEntry{}}
}

func (s *kvStore) get(key []byte) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[string(key)]
	if !ok {
		return nil, false
	}
	if !e.exp.IsZero() && s.now().After(e.exp) {
		delete(s.m, string(key))
		return nil, false
	}
	return e.val, true
}

func (s *kvStore) set(key, val []byte, ttl time.Duration) int32 {
	if len(key) == 0 || len(key) > abi.MaxKVKey || len(val) > abi.MaxKVValue {
		return abi.StatusInvalid
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if _, exists := s.m[string(key)]; !exists && len(s.m) >= abi.MaxKVEntries {
		for k, e := range s.m {
			if !e.exp.IsZero() && now.After(e.exp) {
				delete(s.m, k)
			}
		}
		if len(s.m) >= abi.MaxKVEntries {
			return abi.StatusQuota
		}
	}
	e := kvEntry{val: append([]byte(nil), val...)}
	if ttl > 0 {
		e.exp = now.Add(ttl)
	}
	s.m[string(key)] = e
	return abi.StatusOK
}

func (s *kvStore) delete(key []byte) {
	s.mu.Lock()
	delete(s.m, string(key))
	s.mu.Unlock()
}
