"""core/cache.py: a full cache makes room without forgetting everyone."""

from __future__ import annotations

from core.cache import TTLCache


def test_a_full_cache_drops_its_oldest_tenth_not_every_entry():
    cache = TTLCache(ttl_s=60, max_entries=100)
    for i in range(100):
        cache.put(f"k{i}", i)
    cache.put("new", -1)  # full: the ten oldest go, the other ninety stay
    assert cache.lookup("new") == (True, -1)
    assert [cache.lookup(f"k{i}")[0] for i in range(100)] == [False] * 10 + [True] * 90
    for i in range(1000):  # a flood of made-up ids keeps the cache at its size
        cache.put(f"made-up-{i}", None)
    assert len(cache._entries) <= 100 and cache.lookup("made-up-999") == (True, None)
