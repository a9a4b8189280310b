"""A study's data, read once per process: OK images, real training labels and every test set, at the study's size.

Which images play which part is fixed by the recipe's ``data`` section, never by a cell's seed, so every cell
of a study trains and is tested on the same split:

- ``deeppcb`` (aligned pairs): ids sorted, every ``test_every``-th (index ``% test_every == test_every - 1``) is a
  test pair; the OK images are the training pairs' templates, the real training set their tested images.
- ``mvtec``: the OK images are ``train/good``, the real test set the ``test`` split (masks included), less the
  training part of ``data.defect_split`` when the recipe sets one (a seeded split of the defective images per
  type, :func:`defectgen.io.mvtec.split_defects`: families may learn from that part); there are no real
  training labels (``data.real_train`` can name some).
- ``folder``: the OK images are the folder ``data.ok``; ``data.real_train`` / ``data.real_test`` name labelled
  sets in any format :func:`~detectors.data.read_labelled` takes.

``holdout_ok`` OK images (a fixed choice) are kept out of training; synthetic test sets are made on them.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch

from defectgen.rng import index_seed

from ..types import AGNOSTIC_CLASS, LabelledSet
from .plan import Study
from .splits import defect_split_training, split_pair_ids

CHANNELS = 3


class StudyData:
    """Lazily read, cached data of one study (see the module docstring)."""

    def __init__(self, study: Study):
        self.study = study
        self.size = study.image_size
        self._cache: Dict[str, Any] = {}

    # -- the split -------------------------------------------------------------------------------------------
    def _cached(self, key: str, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def _deeppcb_ids(self):
        from defectgen.io import read_pairs

        ids = sorted(item.name for item in read_pairs(self.study.resolve_path(self.study.data["root"])))
        return (ids, *split_pair_ids(ids, self.study.data["test_every"]))

    def _all_ok(self) -> torch.Tensor:
        data = self.study.data
        if data["format"] == "deeppcb":
            from ..data import read_templates

            ids, train, _ = self._cached("deeppcb_ids", self._deeppcb_ids)
            templates = read_templates(self.study.resolve_path(data["root"]), self.size, CHANNELS)
            order = {name: k for k, name in enumerate(ids)}
            return templates[[order[i] for i in train]]
        from ..data import load_normal_images

        source = data["root"] if data["format"] == "mvtec" and "ok" not in data else data["ok"]
        return load_normal_images(self.study.resolve_path(source), self.size, CHANNELS)

    def _holdout_index(self, count: int) -> torch.Tensor:
        held = self.study.data["holdout_ok"]
        if held >= count:
            raise ValueError(f"data.holdout_ok is {held} but there are only {count} OK images")
        generator = torch.Generator().manual_seed(index_seed(0, 0, "study-holdout-ok"))
        return torch.randperm(count, generator=generator)[:held].sort().values

    def _split_ok(self):
        images = self._all_ok()
        held = self._holdout_index(len(images))
        keep = torch.ones(len(images), dtype=torch.bool)
        keep[held] = False
        return images[keep], images[held]

    @property
    def ok_train(self) -> torch.Tensor:
        """``(N, 3, S, S)`` uint8 OK images that synthetic defects are made on (the held-out ones excluded)."""
        return self._cached("ok", self._split_ok)[0]

    @property
    def ok_holdout(self) -> torch.Tensor:
        """The held-out OK images (``data.holdout_ok`` of them), for synthetic test sets."""
        return self._cached("ok", self._split_ok)[1]

    def _labelled(self, spec: Dict[str, Any]) -> LabelledSet:
        from ..data import read_labelled

        return read_labelled(self.study.resolve_path(spec["path"]), spec.get("format", "auto"),
                             split=spec.get("split"), size=self.size, channels=CHANNELS)

    def _deeppcb_part(self, part: str) -> LabelledSet:
        from ..data import read_deeppcb

        ids, train, test = self._cached("deeppcb_ids", self._deeppcb_ids)
        everything = self._cached("deeppcb_all", lambda: read_deeppcb(
            self.study.resolve_path(self.study.data["root"]), size=self.size, channels=CHANNELS))
        order = {name: k for k, name in enumerate(everything.names)}
        return everything.subset([order[i] for i in (train if part == "train" else test)])

    @property
    def real_train(self) -> Optional[LabelledSet]:
        """The real labelled training images (None when the data has none)."""
        def make():
            data = self.study.data
            if "real_train" in data:
                return self._labelled(data["real_train"])
            if data["format"] == "deeppcb":
                return self._deeppcb_part("train")
            return None

        return self._cached("real_train", make)

    @property
    def real_test(self) -> LabelledSet:
        """The data's real test set (``test_sets: {name: real}``)."""
        def make():
            data = self.study.data
            if "real_test" in data:
                return self._labelled(data["real_test"])
            if data["format"] == "deeppcb":
                return self._deeppcb_part("test")
            if data["format"] == "mvtec":
                from ..data import read_labelled

                test = read_labelled(self.study.resolve_path(data["root"]), "mvtec", split="test", size=self.size,
                                     channels=CHANNELS)
                return without_defect_split(self.study, test)
            raise ValueError("test set 'real': data.format folder needs data.real_test (a labelled set)")

        return self._cached("real_test", make)

    # -- test sets -------------------------------------------------------------------------------------------
    def test_set(self, name: str) -> LabelledSet:
        """Test set ``name`` of the recipe, at the study's image size."""
        return self._cached(f"test:{name}", lambda: self._make_test_set(name))

    def _make_test_set(self, name: str) -> LabelledSet:
        spec = self.study.test_sets[name]
        if spec.get("real"):
            return self.real_test
        if "path" in spec:
            return self._labelled(spec)
        return synthetic_test_set(self.ok_holdout[:spec["images"]], family_op(self.study, spec["synthetic"], None, 0),
                                  spec["seed"], name)

    def check(self, needs_real: List[int]) -> None:
        """Read what the study needs and refuse, before any training, what the data cannot support: ``needs_real``
        holds the real-image counts of the regimes (``None`` for all of them)."""
        if len(self.ok_train) < 2:
            raise ValueError(f"the study needs at least 2 OK training images, found {len(self.ok_train)}")
        if needs_real:
            real = self.real_train
            if real is None:
                raise ValueError("regimes with real images need real training labels: this data has none "
                                 "(set data.real_train)")
            biggest = max((k for k in needs_real if k is not None), default=0)
            if biggest > len(real):
                raise ValueError(f"regime synthetic+{biggest} needs {biggest} real training images but the data "
                                 f"has {len(real)}")
        for name in self.study.test_sets:
            if len(self.test_set(name)) == 0:
                raise ValueError(f"test set {name!r} holds no image")


def without_defect_split(study: Study, test: LabelledSet) -> LabelledSet:
    """An MVTec real test set without ``data.defect_split``'s training part (images, masks and boxes go
    together); the set as it is without a split."""
    from pathlib import Path

    training = defect_split_training(study)
    if not training:
        return test
    root = Path(test.info["root"])
    keep = [i for i, name in enumerate(test.names) if (root / name).resolve() not in training]
    return test.subset(keep)


def family_op(study: Study, spec: Any, data: Optional[StudyData], seed: int):
    """The operator a family spec makes defects with (``{op}``, ``{recipe}``, ``{pretext}`` or ``{transplant}``);
    a list of operators for a multi-class op list. ``data`` and ``seed`` choose a transplant's real pairs."""
    from defectgen.recipe import build_op

    if "op" in spec:
        items = spec["op"] if isinstance(spec["op"], list) else [spec["op"]]
        return build_op(items, None)[0]
    if "recipe" in spec:
        return build_op(None, study.resolve_path(spec["recipe"]))[0]
    if "pretext" in spec:
        from defectgen import OneOf

        from ..cutpaste.pretext import Pretext

        ops = Pretext(spec["pretext"]).ops
        return ops[0] if len(ops) == 1 else OneOf(ops, labels=list(range(1, len(ops) + 1)))
    if "fit" in spec:
        return fitted_recipe(study, spec["fit"], seed)[0]
    return transplant_op(study, spec["transplant"], data, seed)


def fitted_recipe(study: Study, spec: Dict[str, Any], seed: int):
    """``(operator, defects_per_image, recipe)`` of a ``fit`` family: ``defectgen fit`` (:mod:`defectgen.fit`)
    run on the cell's own ``spec["k"]`` real training images — chosen from the study's training pairs by
    :func:`~defectgen.io.labelled.choose_real` with ``seed``, the images a ``synthetic+K`` cell trains on — and its
    recipe built in memory. ``defects_per_image`` is the count per image the fit measured."""
    from defectgen.fit import RealSpec, fit_recipe, measure_defects, read_real
    from defectgen.recipe import build_op

    k = spec.get("k")
    if not k:
        raise ValueError("a fit family learns from the regime's K real images: its cells need a synthetic+K regime")
    if study.data["format"] != "deeppcb":
        raise ValueError("a fit family in a study reads its K real training images from aligned pairs "
                         "(data.format deeppcb); for other data run `defectgen fit` and name its recipe")
    real = RealSpec(str(study.resolve_path(study.data["root"])), "deeppcb", count=int(k), seed=seed,
                    test_every=study.data.get("test_every")).resolved()
    chosen, templates, _, _ = read_real(real, study.image_size)
    statistics = measure_defects(chosen, templates=templates)
    recipe = fit_recipe(statistics, real, transplant=spec.get("transplant", True),
                        variety_prior=spec.get("variety_prior", 10.0))
    config = {key: value for key, value in recipe.items() if key not in ("class_names", "defects_per_image")}
    op = build_op(config, None)[0]
    return op, int(recipe["defects_per_image"]), recipe


def transplant_op(study: Study, spec: Dict[str, Any], data: Optional[StudyData], seed: int):
    """Real defects of ``spec["pairs"]`` training pairs (chosen by ``seed``), cut out by difference with their
    templates and moved onto OK images; ``groups`` puts each list of types on its own foreground."""
    from defectgen import DefectBank, DefectTransplant, OneOf

    from defectgen.io.labelled import choose_real

    if study.data["format"] != "deeppcb" or data is None:
        raise ValueError("a transplant family needs aligned pairs to cut real defects from: data.format deeppcb")
    ids = list(choose_real(data.real_train, spec["pairs"], seed).names)
    groups = spec.get("groups") or [{"types": None, "foreground": None}]
    branches = []
    for group in groups:
        bank = DefectBank.from_deeppcb(study.resolve_path(study.data["root"]), ids=ids, types=group.get("types"))
        branches.append(DefectTransplant(bank=bank, foreground=group.get("foreground"),
                                         blend=spec.get("blend", "replace"),
                                         match_brightness=bool(spec.get("match_brightness", False))))
    return branches[0] if len(branches) == 1 else OneOf(branches, labels=[1] * len(branches))


def synthetic_test_set(ok: torch.Tensor, op, seed: int, name: str) -> LabelledSet:
    """A test set made by ``op`` on OK images: every image once as it is (defect-free) and once with a defect
    (class-agnostic boxes and masks); images the operator left unchanged count as defect-free."""
    generator = torch.Generator().manual_seed(index_seed(seed, 0, f"synthetic-test-{name}"))
    out = op(ok, generator=generator)
    counts = torch.bincount(out.box_index, minlength=len(ok)).tolist()
    boxes = list(out.boxes.to(torch.float32).split(counts))
    empty = torch.zeros(0, 4)
    images = list(ok) + list(out.image)
    masks = [torch.zeros(1, *ok.shape[-2:], dtype=torch.bool)] * len(ok) + [m.bool() for m in out.mask]
    all_boxes = [empty] * len(ok) + boxes
    labels = [torch.ones(len(b), dtype=torch.int64) for b in all_boxes]
    names = [f"ok_{i}" for i in range(len(ok))] + [f"ng_{i}" for i in range(len(ok))]
    return LabelledSet(images, all_boxes, labels, (AGNOSTIC_CLASS,), names, masks,
                       info={"format": "synthetic", "root": name, "split": "test"})
