"""Class maps: how one set's class names become another's (synthetic ``cutpaste`` -> real ``short``...).

A detector trained on synthetic classes is tested on real ones named differently; a class map says which is
which, and :meth:`LabelledSet.mapped` applies it (``.agnostic()`` when only "defect or not" matters). Maps
come from the command line (``"cutpaste=short,scar=open"``), a recipe (a mapping) or a YAML/JSON file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Mapping, Optional, Union

import yaml

ClassMap = Dict[str, Optional[str]]
"""``{old name: new name}``; a ``None`` new name drops that class's boxes."""

_DROP = ("", "-")


def parse_class_map(spec: Union[str, Path, Mapping[str, Optional[str]]]) -> ClassMap:
    """A :data:`ClassMap` from ``"old=new,old2=new2"``, a mapping, or the path of a YAML/JSON file holding one.

    An empty new name or ``-`` (``"scar=-"``) drops the class. Whitespace around names is ignored.

    Raises:
        ValueError: naming the entry or file: an entry without ``=``, an empty old name, an old name given twice
            with different targets, a file that does not hold a mapping of names.
        TypeError: ``spec`` is neither text, a path nor a mapping.
    """
    if isinstance(spec, Mapping):
        return _check_mapping(spec, "class map")
    if isinstance(spec, Path) or (isinstance(spec, str) and Path(spec).suffix.lower() in (".yaml", ".yml", ".json")
                                  and "=" not in spec):
        return _from_file(Path(spec))
    if not isinstance(spec, str):
        raise TypeError(f"class map must be 'old=new,...', a mapping or a file path, got {type(spec).__name__}")
    out: ClassMap = {}
    for entry in spec.split(","):
        if not entry.strip():
            continue
        if "=" not in entry:
            raise ValueError(f"class map entry {entry.strip()!r} needs the form old=new (in {spec!r})")
        old, new = (part.strip() for part in entry.split("=", 1))
        _add(out, old, None if new in _DROP else new, f"class map {spec!r}")
    if not out:
        raise ValueError(f"class map {spec!r} maps no class (expected 'old=new,old2=new2')")
    return out


def _from_file(path: Path) -> ClassMap:
    try:
        data = yaml.safe_load(path.read_text())  # YAML reads JSON too
    except OSError as error:
        raise ValueError(f"cannot read class map file {str(path)!r}: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        raise ValueError(f"class map file {str(path)!r} is not valid YAML/JSON: {str(error).splitlines()[0]}") from None
    if not isinstance(data, Mapping):
        raise ValueError(f"class map file {str(path)!r} must hold a mapping {{old name: new name}}")
    return _check_mapping(data, f"class map file {str(path)!r}")


def _check_mapping(mapping: Mapping, where: str) -> ClassMap:
    out: ClassMap = {}
    for old, new in mapping.items():
        if not isinstance(old, str) or not (new is None or isinstance(new, str)):
            raise ValueError(f"{where}: entries must map a class name to a name (or null to drop it), got "
                             f"{old!r}: {new!r}")
        new = None if new is None or new.strip() in _DROP else new.strip()
        _add(out, old.strip(), new, where)
    if not out:
        raise ValueError(f"{where} maps no class")
    return out


def _add(out: ClassMap, old: str, new: Optional[str], where: str) -> None:
    if not old:
        raise ValueError(f"{where}: an entry has an empty class name before '='")
    if old in out and out[old] != new:
        raise ValueError(f"{where}: class {old!r} is mapped twice ({out[old]!r} and {new!r})")
    out[old] = new
