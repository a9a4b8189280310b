"""No test data in training: which real files a family learns from, which files a test set scores on, and the
refusal of a family whose two overlap (unless its spec says ``allow_overlap: true``).

Checked when a recipe is loaded (so ``defectgen ablate --plan`` refuses too), from file listings and small JSON
files only: no image is decoded and no model weight is loaded. Paths are compared resolved to absolute ones.

What a family learns from (its training files):

- any :class:`~defectgen.DefectBank` its operator config or operator recipe builds (a ``bank:`` entry anywhere
  in the config, e.g. a ``transplant`` mask's or :class:`~defectgen.DefectTransplant`'s): an MVTec folder's
  defective test images (only the part ``split`` / ``shots`` / ``split_seed`` / ``defects`` /
  ``max_per_type`` select, as :func:`defectgen.bank.mvtec_bank_items` lists them) or an aligned-pairs folder's
  tested images (``ids`` / ``limit``);
- any inpainting model folder it names (``model:``): the images its ``defectgen_inpaint.json`` records as
  trained on (``info.train_defects``, or ``info.defects``, the bank it was trained on). A folder that does not
  exist yet (a model still to train) or holds no such record (a Stable Diffusion folder) adds nothing;
- a ``transplant`` family (aligned pairs): the tested images of the data's training pairs (the K pairs a seed
  chooses are among them).

Paths inside operator configs are relative to the directory ``defectgen`` runs in, as when the operator is
built; a model's recorded names, when relative, are taken from its ``info.data_root`` (the data folder,
resolved, as ``defectgen train inpaint`` records it), else from the same directory.

What a test set scores on: ``real`` is the data's real test split (an MVTec folder's ``test/`` images minus
``data.defect_split``'s training part, a DeepPCB folder's test pairs, or ``data.real_test``); a
``{path, format}`` set is an MVTec folder's listed split, a DeepPCB folder's pairs, or, in any other format,
every image file under the path. Synthetic test sets are made on held-out OK images: nothing to compare.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Set, Tuple

from .plan import Study
from .schema import BASELINE, RecipeError
from .splits import defect_split_training, mvtec_root, resolved, split_pair_ids

SHOWN = 3
"""How many of the overlapping files a refusal names (then the count)."""


def shown(path: Path) -> str:
    """A path as a message shows it: relative to the current directory when that is shorter."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive
        return str(path)
    return relative if len(relative) < len(str(path)) else str(path)


# -- what a test set scores on ------------------------------------------------------------------------------------
class _Listing:
    """File listings, each read once per check."""

    def __init__(self, study: Study):
        self.study = study
        self._cache: Dict[Tuple, Any] = {}

    def pairs(self, root: Path):
        key = ("pairs", root)
        if key not in self._cache:
            from defectgen.io import read_pairs

            self._cache[key] = read_pairs(root)
        return self._cache[key]

    def deeppcb_ids(self) -> Tuple[List[str], List[str]]:
        """The data's training and test pair ids (the study's split: sorted, every ``test_every``-th a test)."""
        ids = sorted(item.name for item in self.pairs(self.study.resolve_path(self.study.data["root"])))
        return split_pair_ids(ids, self.study.data["test_every"])

    def pair_images(self, root: Path, ids: Optional[Iterable[str]] = None) -> Set[Path]:
        items = self.pairs(root)
        if ids is not None:
            wanted = set(ids)
            items = [it for it in items if it.name in wanted]
        return {resolved(it.image) for it in items}


def test_set_files(study: Study, name: str, listing: Optional[_Listing] = None) -> Optional[Set[Path]]:
    """The resolved image files test set ``name`` scores on; None for a synthetic one (made on OK images)."""
    listing = listing or _Listing(study)
    spec = study.test_sets[name]
    data = study.data
    if spec.get("real"):
        if "real_test" in data:
            return labelled_files(study, data["real_test"], listing)
        if data["format"] == "deeppcb":
            return listing.pair_images(study.resolve_path(data["root"]), listing.deeppcb_ids()[1])
        if data["format"] == "mvtec":
            from defectgen.io import read_mvtec

            layout = read_mvtec(mvtec_root(study.resolve_path(data["root"])), require_test=True)
            return {resolved(item.image) for item in layout.test} - defect_split_training(study)
        return None
    if "path" in spec:
        return labelled_files(study, spec, listing)
    return None


def labelled_files(study: Study, spec: Mapping[str, Any], listing: _Listing) -> Set[Path]:
    """The image files of a ``{path, format, split}`` labelled set (see the module docstring)."""
    from defectgen.io import IMAGE_EXTENSIONS, read_mvtec

    from ..data import detect_format

    root = study.resolve_path(str(spec["path"]))
    fmt = spec.get("format", "auto")
    if fmt in (None, "auto"):
        try:
            fmt = detect_format(root)
        except ValueError:
            fmt = None
    if fmt == "mvtec" and root.is_dir():
        root = mvtec_root(root)
        split = spec.get("split") or "test"
        layout = read_mvtec(root, require_test=split == "test", require_train=split == "train")
        return {resolved(p) for p in layout.train} if split == "train" else \
            {resolved(item.image) for item in layout.test}
    if fmt == "deeppcb" and root.is_dir():
        return listing.pair_images(root)
    if root.is_file():
        root = root.parent
    return {resolved(p) for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS}


# -- what a family learns from ------------------------------------------------------------------------------------
def family_training_files(study: Study, spec: Any, listing: Optional[_Listing] = None) -> Dict[Path, str]:
    """``{resolved image file: where the family learns it from}`` for a family spec (see the module docstring)."""
    listing = listing or _Listing(study)
    if spec == BASELINE or not isinstance(spec, Mapping):
        return {}
    if "transplant" in spec or "fit" in spec:  # both learn from real defects of the data's training pairs
        if study.data["format"] != "deeppcb":
            return {}
        root = study.resolve_path(study.data["root"])
        where = f"the real defects of training pairs of {shown(root)}"
        return {path: where for path in listing.pair_images(root, listing.deeppcb_ids()[0])}
    if "op" in spec:
        config = spec["op"]
    elif "recipe" in spec:
        from defectgen.recipe import load_recipe

        config = load_recipe(study.resolve_path(spec["recipe"]))
    else:  # a named pretext: no real data
        return {}
    found: Dict[Path, str] = {}
    for kind, value in _data_references(config):
        if kind == "bank":
            for path in bank_files(value, listing):
                found.setdefault(path, f"bank {_bank_name(value)}")
        else:
            for path in model_files(value):
                found.setdefault(path, f"model {value}")
    return found


def _data_references(config: Any) -> List[Tuple[str, Any]]:
    """Every ``bank:`` value and every ``model:`` folder name anywhere in an operator config."""
    found: List[Tuple[str, Any]] = []
    if isinstance(config, Mapping):
        if "bank" in config:
            found.append(("bank", config["bank"]))
        if isinstance(config.get("model"), str):
            found.append(("model", config["model"]))
        for key, value in config.items():
            if key != "bank":
                found += _data_references(value)
    elif isinstance(config, (list, tuple)):
        for value in config:
            found += _data_references(value)
    return found


def _bank_name(bank: Any) -> str:
    if isinstance(bank, Mapping):
        extra = ", ".join(f"{k}: {v}" for k, v in bank.items() if k in ("split", "shots", "split_seed", "defects",
                                                                          "max_per_type", "ids", "limit"))
        return f"{bank.get('root')}" + (f" ({extra})" if extra else "")
    return str(bank)


def bank_files(bank: Any, listing: _Listing) -> Set[Path]:
    """The resolved image files a bank spec (a folder, or a dict of builder arguments, as
    :func:`defectgen.bank.as_bank` takes it) is cut from."""
    from defectgen.bank import mvtec_bank_items

    if isinstance(bank, (str, Path)):
        root = Path(str(bank))
        if not (root / "test").is_dir() and (root / "templates").is_dir():
            return listing.pair_images(resolved(root))
        return {resolved(item.image) for item in mvtec_bank_items(root)}
    if isinstance(bank, Mapping) and "root" in bank:
        settings = {k: v for k, v in bank.items() if k not in ("layout", "foreground")}
        if bank.get("layout", "mvtec") == "pairs":
            root = resolved(settings["root"])
            items = listing.pairs(root)
            ids = settings.get("ids")
            if ids is not None:
                ids = {ids} if isinstance(ids, str) else {str(i) for i in ids}
                items = [it for it in items if it.name in ids]
            if settings.get("limit") is not None:
                items = items[:int(settings["limit"])]
            return {resolved(it.image) for it in items}
        return {resolved(item.image) for item in mvtec_bank_items(**settings)}
    return set()


def model_files(model: str) -> Set[Path]:
    """The resolved image files an inpainting model folder records as trained on (``info.train_defects`` or
    ``info.defects``); empty for a folder that is missing or records none."""
    from defectgen.sources.diffusion.model import CONFIG_FILE

    file = Path(model).expanduser() / CONFIG_FILE
    if not file.is_file():
        return set()
    try:
        info = json.loads(file.read_text()).get("info") or {}
    except (OSError, ValueError, AttributeError):
        return set()
    names = list(info.get("train_defects") or []) + list(info.get("defects") or [])
    data, data_root = info.get("data"), info.get("data_root")
    out = set()
    for name in names:
        path = Path(str(name))
        if not path.is_absolute() and data and data_root:
            try:
                path = Path(data_root) / path.relative_to(Path(data))
            except ValueError:
                pass
        out.add(resolved(path))
    return out


# -- the check --------------------------------------------------------------------------------------------------
def find_overlaps(study: Study) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """``{family: {test set: {"count", "files" (all, shown), "source"}}}`` for every family whose training files
    are also in a test set it is scored on."""
    listing = _Listing(study)
    tests: Dict[str, Optional[Set[Path]]] = {}
    out: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for family, spec in study.families.items():
        where = f"families.{family}"
        try:
            trained = family_training_files(study, spec, listing)
        except (ValueError, OSError, TypeError) as error:
            raise RecipeError(f"{where}: cannot list the real data it learns from: {error}") from None
        if not trained:
            continue
        for name in study.test_sets:
            if name not in tests:
                try:
                    tests[name] = test_set_files(study, name, listing)
                except (ValueError, OSError) as error:
                    raise RecipeError(f"test_sets.{name}: cannot list its files: {error}") from None
            common = sorted(set(trained) & (tests[name] or set()))
            if common:
                out.setdefault(family, {})[name] = {"count": len(common), "files": [shown(p) for p in common],
                                                    "source": trained[common[0]]}
    return out


def check_overlaps(study: Study) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """Refuse (:class:`RecipeError`, one line) a family that learns from files of a test set it is scored on,
    unless its spec says ``allow_overlap: true``; returns the allowed overlaps, for the report."""
    overlaps = find_overlaps(study)
    for family, per_test in overlaps.items():
        if study.allow_overlap.get(family):
            continue
        name, found = next(iter(per_test.items()))
        files = ", ".join(found["files"][:SHOWN])
        more = f" and {found['count'] - SHOWN} more" if found["count"] > SHOWN else ""
        others = f" (and files of test sets {', '.join(list(per_test)[1:])})" if len(per_test) > 1 else ""
        hint = "set data.defect_split to keep that part out of the real test set, " \
            if study.data["format"] == "mvtec" and "real_test" not in study.data else ""
        count = f"{found['count']} file" + ("s" if found["count"] != 1 else "")
        raise RecipeError(f"families.{family} learns from {count} of test set {name!r} it is scored "
                          f"on{others}, from {found['source']}: {files}{more}; {hint}train it on other data, or "
                          "set allow_overlap: true in the family to run it anyway (the report marks it)")
    return overlaps
