package hostabi

import (
	"context"
	"sync"
	"time"
)

// MemoryKV is a KVStore in the process's memory: what an Engine uses when
// Options.KV is nil (`safeclose plugin run`, tests). It does not survive a
// restart and is not shared between processes. It is safe for concurrent
// use.
type MemoryKV struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]map[string]kvEntry // tenant → key → entry
}

type kvEntry struct {
	val []byte
	exp time.Time // zero: no expiry
}

// NewMemoryKV returns an empty MemoryKV reading time from now (nil means
// time.Now).
func NewMemoryKV(now func() time.Time) *MemoryKV {
	if now == nil {
		now = time.Now
	}
	return &MemoryKV{now: now, m: map[string]map[string]kvEntry{}}
}

// KVGet implements KVStore. The value is shared, not copied: callers
// must not modify it (the host copies it into the guest).
func (s *MemoryKV) KVGet(_ context.Context, tenant string, key []byte) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.m[tenant]
	e, ok := t[string(key)]
	if !ok {
		return nil, false, nil
	}
	if !e.exp.IsZero() && s.now().After(e.exp) {
		delete(t, string(key))
		return nil, false, nil
	}
	return e.val, true, nil
}

// KVSet implements KVStore.
func (s *MemoryKV) KVSet(_ context.Context, tenant string, key, val []byte, ttl time.Duration, maxEntries int) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.m[tenant]
	if t == nil {
		t = map[string]kvEntry{}
		s.m[tenant] = t
	}
	now := s.now()
	if _, exists := t[string(key)]; !exists && len(t) >= maxEntries {
		for k, e := range t {
			if !e.exp.IsZero() && now.After(e.exp) {
				delete(t, k)
			}
		}
		if len(t) >= maxEntries {
			return false, nil
		}
	}
	e := kvEntry{val: append([]byte(nil), val...)}
	if ttl > 0 {
		e.exp = now.Add(ttl)
	}
	t[string(key)] = e
	return true, nil
}

// KVDelete implements KVStore.
func (s *MemoryKV) KVDelete(_ context.Context, tenant string, key []byte) error {
	s.mu.Lock()
	delete(s.m[tenant], string(key))
	s.mu.Unlock()
	return nil
}
