"""Run folders: the one mechanism behind resuming and sharding ``defectgen generate`` and a study (DESIGN section 7).

A run is split into units of work (a generation unit of images, a study cell); a unit is done when its record,
written atomically after all its files, can be read back. So a killed run, several machines writing their shards
into one folder, or shard folders copied together, all resume the same way: do the units whose record is missing.
A folder made with other settings is refused, naming the settings that differ.

- :func:`parse_shard` / :func:`check_shard`: ``--shard k/N`` and ``(k, N)``, the k-th of N shards.
- :func:`contiguous_share` (generate: consecutive units, so a shard's images are one range of indices) and
  :func:`interleaved_share` (a study: every N-th cell, so each shard gets a mix of cheap and costly cells).
- :func:`write_record` / :func:`read_json`: the done-records.
- :func:`differing_keys` / :func:`name_keys`: the refusal of a folder made with other settings.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union

from .io.atomic import write_text_atomic

T = TypeVar("T")
Shard = Tuple[int, int]


def check_shard(shard: Optional[Sequence[int]]) -> Optional[Shard]:
    """``(k, n)`` as ints, checked (``0 <= k < n``); None stays None (the whole run)."""
    if shard is None:
        return None
    try:
        k, n = (int(v) for v in shard)
    except (TypeError, ValueError):
        raise ValueError(f"shard must be a pair (k, n), got {shard!r}") from None
    if n < 1 or not 0 <= k < n:
        raise ValueError(f"shard must be (k, n) with 0 <= k < n, got ({k}, {n})")
    return k, n


def parse_shard(text: str, error: Callable[[str], Exception] = ValueError) -> Shard:
    """``"k/N"`` -> ``(k, N)``, as the CLIs' ``--shard`` takes it; ``error`` (``ValueError`` by default) is raised
    with a message naming the format when the text is not ``k/N`` with ``0 <= k < N``."""
    # one message for both failures and both commands: it names the format (k/N) and the range (0 <= k < n)
    message = f"--shard takes k/N, the k-th of n shards with 0 <= k < n (e.g. 3/8), got {text!r}"
    try:
        k, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise error(message) from None
    if n < 1 or not 0 <= k < n:
        raise error(message)
    return k, n


def contiguous_share(items: Sequence[T], shard: Shard) -> List[T]:
    """Shard ``(k, n)``'s consecutive slice of ``items`` (the n slices differ in length by at most one)."""
    k, n = shard
    return list(items[k * len(items) // n:(k + 1) * len(items) // n])


def interleaved_share(items: Sequence[T], shard: Optional[Shard]) -> List[T]:
    """Shard ``(k, n)``'s items: indices ``i % n == k`` (all items for None)."""
    if shard is None:
        return list(items)
    k, n = shard
    return [item for i, item in enumerate(items) if i % n == k]


def write_record(path: Union[str, Path], record: Mapping[str, Any], indent: Optional[int] = None,
                 default: Optional[Callable[[Any], Any]] = None) -> None:
    """Write a done-record atomically (a reader sees no record or the whole one), keys sorted: one compact line,
    or, with ``indent``, an indented file ending in a newline. ``default`` is ``json.dumps``'s."""
    text = json.dumps(record, indent=indent, sort_keys=True, default=default)
    write_text_atomic(path, text if indent is None else text + "\n")


def read_json(path: Union[str, Path]) -> Optional[Dict[str, Any]]:
    """The JSON in ``path``, or None when it is missing or unreadable (a unit killed before its record was
    written, a half-copied shard)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def flatten(value: Any, prefix: str = "") -> Dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values), for naming the keys two settings differ in."""
    if isinstance(value, Mapping) and value:
        out: Dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def differing_keys(old: Mapping[str, Any], new: Mapping[str, Any], nested: bool = True) -> List[str]:
    """The keys whose values differ between two settings (added and removed keys included), sorted; compared as
    JSON would store them. ``nested``: name the innermost keys (``a.b``); else the top-level ones."""
    a, b = json.loads(json.dumps(old, default=str)), json.loads(json.dumps(new, default=str))
    if nested:
        a, b = flatten(a), flatten(b)
    return sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))


def name_keys(keys: Sequence[str], limit: Optional[int] = None) -> str:
    """``"a, b, c"``: the keys two settings differ in, for the message refusing a folder made with other settings;
    ``limit``: name at most this many, then how many more."""
    keys = list(keys)
    shown = ", ".join(keys[:limit])
    if limit is not None and len(keys) > limit:
        shown += f" and {len(keys) - limit} more"
    return shown


__all__ = ["Shard", "check_shard", "parse_shard", "contiguous_share", "interleaved_share", "write_record",
           "read_json", "flatten", "differing_keys", "name_keys"]
