"""Settings objects as plain types, and back: checkpoints hold only what `weights_only` loads.

A choice made by class (a schedule, a corpus format) is stored as LightningCLI writes it,
`{"class_path": "seq2seq.schedules.Budget", "init_args": {...}}`, and rebuilt only as a
subclass of the expected base that is already imported: a checkpoint cannot name other code.
"""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from typing import Any, TypeVar

from seq2seq.errors import Seq2SeqError

T = TypeVar("T")


def to_plain(value: Any) -> Any:
    """A dataclass instance as `{"class_path", "init_args"}`; anything else unchanged."""
    if is_dataclass(value) and not isinstance(value, type):
        kind = type(value)
        return {"class_path": f"{kind.__module__}.{kind.__qualname__}", "init_args": asdict(value)}
    return value


def from_plain(base: type[T], value: T | dict[str, Any]) -> T:
    """`value` as an instance of a subclass of `base`, from its plain form if need be."""
    if isinstance(value, base):
        return value
    if not isinstance(value, dict) or "class_path" not in value:
        raise Seq2SeqError(f"expected a {base.__name__} (class_path and init_args), got {value!r}")
    known = {f"{k.__module__}.{k.__qualname__}": k for k in _subclasses(base)}
    name = value["class_path"]
    matches = [k for path, k in known.items() if name in (path, path.rsplit(".", 1)[-1])]
    if len(matches) != 1:
        raise Seq2SeqError(
            f"unknown {base.__name__} {name!r}: one of {', '.join(sorted(known))}"
        )
    return matches[0](**value.get("init_args", {}))


def dataclass_of(kind: type[T], value: T | dict[str, Any]) -> T:
    """`value` as the dataclass `kind`, from its fields as a dict if need be."""
    return kind(**value) if isinstance(value, dict) else value


def _subclasses(base: type) -> list[type]:
    found = []
    for subclass in base.__subclasses__():
        found += [subclass, *_subclasses(subclass)]
    return found
