"""Run a defectgen operator as an albumentations transform, inside ``A.Compose`` with masks and boxes.

``DefectTransform`` puts a synthetic defect on ``image`` and adds it to the data as targets that later
transforms move with the image: the defect mask under ``"defect_mask"``, the defect boxes appended to
``bboxes`` (their class in the bbox label fields) and the sample's class under ``"defect_label"``::

    import albumentations as A
    from defectgen.compat.albumentations import DefectTransform

    transform = A.Compose(
        [DefectTransform("cutpaste"), A.HorizontalFlip(p=0.5)],
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"]),
        additional_targets={"defect_mask": "mask"},   # so the flip moves the defect mask too
        seed=0,
    )
    out = transform(image=image, bboxes=[], labels=[])
    out["image"], out["defect_mask"], out["bboxes"], out["labels"], out["defect_label"]

Needs albumentations >= 2.0 (``pip install 'defectgen[albumentations]'``).
"""
from __future__ import annotations

import numbers
from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import torch

try:
    import albumentations as A
except ImportError as error:  # pragma: no cover - exercised by a test that hides the package
    raise ImportError("defectgen.compat.albumentations needs albumentations >= 2.0; install it with "
                      "pip install 'defectgen[albumentations]'") from error

if int(A.__version__.split(".")[0]) < 2:
    raise ImportError(f"defectgen.compat.albumentations needs albumentations >= 2.0 (its seeded Compose and "
                      f"bbox label handling), found {A.__version__}; upgrade with "
                      "pip install -U 'defectgen[albumentations]'")

from albumentations.core.type_definitions import Targets

from ..checks import check_probability
from ..registry import resolve_op
from ..values import space_arguments
from . import _worker_seed

__all__ = ["DefectTransform"]

#: keys albumentations itself gives a meaning to; the defect's own keys must not collide with them
_RESERVED_KEYS = frozenset({"image", "images", "mask", "masks", "mask3d", "masks3d", "bboxes", "keypoints",
                            "volume", "volumes", "applied_transforms"})

_BOXES = "bboxes"


class DefectTransform(A.DualTransform):
    """A defectgen operator as an albumentations transform.

    Args:
        op: a defectgen operator, a registered name (``"cutpaste"``) or a config dict (``{"op": "scar", ...}``),
            built with :func:`defectgen.create_op`.
        mask_key: data key of the defect mask, an ``(H, W)`` uint8 array of 0 and 1. Declare it as a mask
            target, ``A.Compose(..., additional_targets={"defect_mask": "mask"})``, so that geometric
            transforms after this one move it with the image (albumentations only moves declared keys;
            undeclared, it would stay where the defect was painted).
        label_key: data key of the sample's class: 0 when no defect was made (the operator's own ``p``, or
            this transform's ``p``), otherwise the operator's class id.
        box_labels: what the defect boxes get in the ``label_fields`` of the Compose's ``BboxParams``, per
            field: a constant, or a dict from the defect's class id to a label (``{1: "cutpaste", 2: "scar"}``).
            A field not named here gets the class id (an int). The labels must be of the kind the field
            already holds (numbers or strings): albumentations encodes each field one way.
        p: probability of applying the transform. Defaults to 1 because the operator has its own ``p``.
        value_range, mean, std: the value space of float images outside ``[0, 1]`` (e.g. after
            ``A.Normalize``: its ``mean`` and ``std``), passed to every operator call (:mod:`defectgen.values`).

    What happens to the data:
        - ``image`` (``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)``, uint8 or float32 in [0, 1]) gets the defect;
          pixels outside the defect mask are unchanged. Other image targets pass through unchanged.
        - ``mask`` / ``masks`` (the user's own masks) and ``keypoints`` pass through unchanged: a defect is
          painted over the image, it does not move pixels.
        - ``bboxes``: the user's boxes are kept as they are; the defect boxes (tight around each defect
          instance, in pixel-edge coordinates) are appended after them. This needs ``bbox_params`` on the
          Compose; they come back in its format. Without ``bbox_params`` no boxes are added (the mask still
          locates the defect). Inline labels (extra bbox columns) are not supported: use ``label_fields``.
        - When the keys already hold an earlier defect (two DefectTransforms in one pipeline), the masks
          are OR-ed and the label is replaced only when this transform made a defect.
        - When the transform is not applied (``p``), the image is unchanged, the mask is all zeros and
          the label 0, so every sample has the same keys.

    Randomness: each call draws the operator's seed from the transform's albumentations generator, so
    ``A.Compose(..., seed=N)`` repeats a run exactly. Inside a DataLoader worker the draw is mixed with
    the worker's PyTorch seed: albumentations 2.0 gives every worker a copy of the same generator, which
    would otherwise repeat the same defects in every worker and every epoch. The seed of the last call is
    ``get_applied_params()["defect_seed"]``; ``op(image_batch, seed=...)`` reproduces it.
    """

    _targets = (Targets.IMAGE, Targets.MASK, Targets.BBOXES, Targets.KEYPOINTS)

    def __init__(self, op: Any, mask_key: str = "defect_mask", label_key: str = "defect_label",
                 box_labels: Optional[Mapping[str, Any]] = None, p: float = 1.0, value_range=None, mean=None,
                 std=None):
        super().__init__(p=check_probability(p, "p"))
        self.op = resolve_op(op)
        self.space = space_arguments(value_range, mean, std)
        self.mask_key = _check_key(mask_key, "mask_key")
        self.label_key = _check_key(label_key, "label_key")
        if self.mask_key == self.label_key:
            raise ValueError(f"mask_key and label_key must differ, both are {mask_key!r}")
        self.box_labels = _check_box_labels(box_labels)

    def get_params(self) -> Dict[str, Any]:
        return {"defect_seed": _worker_seed(self.py_random.getrandbits(63))}

    def get_transform_init_args(self) -> Dict[str, Any]:
        # the operator as its config, so A.to_dict / A.from_dict round-trip the transform
        return {"op": self.op.to_config(), "mask_key": self.mask_key, "label_key": self.label_key,
                "box_labels": self.box_labels, **self.space}

    def __call__(self, *args: Any, force_apply: bool = False, **kwargs: Any) -> Dict[str, Any]:
        if not args and "image" not in kwargs:
            # checked here: albumentations would fail on its own with a KeyError for 'images'
            raise ValueError("DefectTransform needs the data to have an 'image' (pass image=...); batches "
                             "(images=) and volumes are not supported")
        data = super().__call__(*args, force_apply=force_apply, **kwargs)
        if self.mask_key not in data or self.label_key not in data:  # not applied: still give every key
            height, width = _image_hwc(data.get("image")).shape[:2]
            data.setdefault(self.mask_key, np.zeros((height, width), dtype=np.uint8))
            data.setdefault(self.label_key, 0)
        return data

    def apply_with_params(self, params: Dict[str, Any], *args: Any, **kwargs: Any) -> Dict[str, Any]:
        image = kwargs.get("image")
        hwc = _image_hwc(image)
        batch = torch.from_numpy(np.ascontiguousarray(hwc)).permute(2, 0, 1).unsqueeze(0)
        result = self.op(batch, seed=params["defect_seed"], **self.space)
        height, width = hwc.shape[:2]

        data = dict(kwargs)
        data["image"] = np.ascontiguousarray(result.image[0].permute(1, 2, 0).numpy()).reshape(image.shape)
        mask = result.mask[0, 0].numpy()
        label = int(result.label[0])
        previous = data.get(self.mask_key)
        if previous is not None:
            previous = np.asarray(previous)
            if previous.shape[:2] != (height, width):
                raise ValueError(f"data[{self.mask_key!r}] has shape {previous.shape}, but the image is "
                                 f"{height} x {width}")
            mask = mask | (previous.reshape(height, width) != 0)
        data[self.mask_key] = mask.astype(np.uint8)
        data[self.label_key] = label if label != 0 else data.get(self.label_key, 0)

        processor = self.processors.get(_BOXES)
        if processor is not None and result.boxes.shape[0] > 0:
            scale = np.array([width, height, width, height], dtype=np.float64)
            boxes = result.boxes.numpy().astype(np.float64) / scale  # albumentations' normalised xyxy
            self._append_boxes(data, processor, boxes, result.box_label.tolist())
        return data

    # -- boxes --------------------------------------------------------------------------------------------
    def _append_boxes(self, data: Dict[str, Any], processor: Any, boxes: np.ndarray, classes: List[int]) -> None:
        """Append defect boxes to ``data["bboxes"]`` in the Compose's internal layout.

        Inside ``A.Compose`` the boxes are normalised xyxy rows followed by one encoded column per label
        field. When the input had no boxes, albumentations left the label fields as separate (empty) entries;
        they are then encoded here and removed, as the Compose's preprocessing would have done, so that its
        postprocessing splits them off again.
        """
        fields = list(processor.params.label_fields or [])
        separate = [f for f in fields if f in data]
        if separate and len(separate) != len(fields):
            raise ValueError(f"bbox label fields {sorted(set(fields) - set(separate))} are missing from the data")
        n_columns = 4 if separate else 4 + len(fields)  # the label columns are in the rows once merged
        existing = data.get(_BOXES)
        existing = np.zeros((0, n_columns), dtype=np.float32) if existing is None else np.asarray(existing)
        if separate and existing.size:
            raise ValueError("bboxes and their label fields are out of step (labels were not merged into the boxes)")
        if existing.ndim > 2 or (existing.ndim == 2 and existing.shape[1] not in (0, n_columns)):
            raise ValueError(f"bboxes have {existing.shape[-1] - n_columns} extra columns besides the coordinates "
                             f"and the label fields {fields}; DefectTransform cannot tell which holds the class: "
                             "pass labels through BboxParams(label_fields=[...]) instead")

        columns = [boxes]
        for field in fields:
            values = [self._box_label(field, c) for c in classes]
            columns.append(_encode_labels(processor, field, values, data.get(field)))
        rows = np.hstack(columns)
        # float64 for both: the user's rows are exact in it, the defect's keep their precision
        data[_BOXES] = rows if existing.size == 0 else np.concatenate([existing.astype(np.float64), rows])
        for field in separate:
            del data[field]

    def _box_label(self, field: str, class_id: int) -> Any:
        spec = self.box_labels.get(field) if self.box_labels else None
        if spec is None:
            return class_id
        if isinstance(spec, Mapping):
            if class_id not in spec:
                raise ValueError(f"box_labels[{field!r}] has no entry for defect class {class_id} "
                                 f"(it maps {sorted(spec)})")
            return spec[class_id]
        return spec


def _encode_labels(processor: Any, field: str, values: List[Any], raw: Any) -> np.ndarray:
    """Encode the defect boxes' labels of one field the way the Compose encodes the user's labels.

    The Compose's label manager keeps one encoding per field across calls (numbers as floats, anything
    else through a label encoder); a label of the other kind would corrupt it, so that is refused.
    """
    manager = processor.label_manager
    metadata = manager.metadata.get(_BOXES, {}).get(field)
    numeric = all(isinstance(v, numbers.Real) for v in values)
    if metadata is not None and metadata.is_numerical != numeric:
        kind = "numbers" if metadata.is_numerical else "non-numeric labels (e.g. strings)"
        raise ValueError(f"bbox label field {field!r} holds {kind}, but a defect box would get {values[0]!r}; "
                         f"give DefectTransform box_labels={{{field!r}: ...}} with labels of the same kind")
    if metadata is None and isinstance(raw, np.ndarray):
        # first boxes of this field: keep the user's container and dtype, so they come back as given
        values = np.asarray(values, dtype=raw.dtype if numeric and raw.dtype.kind in "biuf" else None)
    return np.asarray(manager.process_field(_BOXES, field, values), dtype=np.float64).reshape(-1, 1)


# -- validation -------------------------------------------------------------------------------------------
def _image_hwc(image: Any) -> np.ndarray:
    """The image as an ``(H, W, C)`` view, after checking what the operators accept."""
    if image is None:
        raise ValueError("DefectTransform needs the data to have an 'image' (pass image=...)")
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array (H, W, C), got {type(image).__name__}")
    if image.dtype not in (np.uint8, np.float32):
        raise TypeError(f"image must be uint8 or float32, got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise ValueError(f"image must be (H, W), (H, W, 1) or (H, W, 3), got shape {image.shape}")
    return image


def _check_key(key: Any, name: str) -> str:
    if not isinstance(key, str) or not key:
        raise TypeError(f"{name} must be a non-empty string, got {key!r}")
    if key in _RESERVED_KEYS:
        raise ValueError(f"{name}={key!r} is an albumentations target name; choose another key")
    return key


def _check_box_labels(box_labels: Any) -> Optional[Dict[str, Any]]:
    if box_labels is None:
        return None
    if not isinstance(box_labels, Mapping) or not all(isinstance(k, str) for k in box_labels):
        raise TypeError(f"box_labels must map bbox label field names to labels, got {box_labels!r}")
    return {field: _int_keys(spec, field) if isinstance(spec, Mapping) else spec for field, spec in box_labels.items()}


def _int_keys(spec: Mapping, field: str) -> Dict[int, Any]:
    """Class-id keys as ints: a JSON round trip (``A.save`` / ``A.load``) turns them into strings."""
    out: Dict[int, Any] = {}
    for key, value in spec.items():
        if isinstance(key, str) and key.lstrip("-").isdigit():
            key = int(key)
        if isinstance(key, bool) or not isinstance(key, int):
            raise TypeError(f"box_labels[{field!r}] must map defect class ids (ints) to labels, got key {key!r}")
        out[key] = value
    return out

