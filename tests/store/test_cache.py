"""The result cache's rows, on every store (SQLite, the embedded store, PostgreSQL)."""

from __future__ import annotations

from conveyor.store import Store
from conveyor.store.cache import CacheEntry


def entry(key: str, iid: str, run: str = "r1", result: str | None = None) -> CacheEntry:
    outputs = [{"kind": "file", "target": f"/p/{iid}.txt", "size": 3, "sha256": "ab" * 32}]
    return CacheEntry(key, run, iid, result, outputs, 1.0)


def test_entries_are_found_by_the_instances_that_made_them(store: Store) -> None:
    store.put_cache_entries([entry("k1", "a", result="/x/a.json"), entry("k2", "b"), entry("k3", "a")])
    found = sorted(store.cache_entries(["a", "zzz"]), key=lambda e: e.key)
    assert [(e.key, e.instance_id, e.result) for e in found] == [("k1", "a", "/x/a.json"), ("k3", "a", None)]
    assert found[0].outputs[0]["target"] == "/p/a.txt"
    many = [f"i{n}" for n in range(1200)]  # past one query's chunk of ids
    store.put_cache_entries([entry(f"m{n}", iid) for n, iid in enumerate(many)])
    assert len(store.cache_entries(many)) == 1200


def test_a_key_made_again_replaces_its_entry(store: Store) -> None:
    store.put_cache_entries([entry("k1", "a", run="r1")])
    store.put_cache_entries([entry("k1", "a", run="r2", result="/y.json")])
    (only,) = store.cache_entries(["a"])
    assert (only.run_id, only.result) == ("r2", "/y.json")


def test_marks_say_which_run_an_instance_reused(store: Store) -> None:
    store.mark_cached("r2", [("a", "k1", "r1"), ("b", "k2", None)])
    store.mark_cached("r2", [("b", "k9", None)])  # a resumed run keys again: the newest wins
    assert store.cached_marks("r2") == {"a": ("k1", "r1"), "b": ("k9", None)}
    assert store.cached_marks("r1") == {}
