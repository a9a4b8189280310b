"""AnomalibDetector: any anomalib image model, trained by anomalib's engine, scored by defectgen's evaluator.

The detector table's ``anomalib`` kind. It builds the named anomalib model offline (:mod:`.models`,
:mod:`.offline`), fills the networks that asked for pretrained weights from a local backbone file
(:mod:`.backbone`), trains it with ``anomalib.engine.Engine`` (:mod:`.training`) and turns its raw output into a
:class:`~detectors.types.Prediction` (:mod:`.convert`), so its numbers come from the same evaluator as every
other detector's. anomalib is imported when a detector is built, never when this module is.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

import torch

from defectgen.checks import check_channels, check_int

from ..base import AnomalyDetector, as_float, check_images
from ..data import ImageSource, load_normal_images
from ..registry import register_detector, save_state
from ..types import Prediction
from .backbone import RANDOM, backbone_start

FORMAT = "defectgen.detectors.anomalib/1"
"""Written into every saved model; loading refuses files without it."""

_CHUNK = 32  # images per inference pass


@register_detector("anomalib")
class AnomalibDetector(AnomalyDetector):
    """An anomalib image model as a defectgen anomaly detector.

    Args:
        model: anomalib's class name (``"Padim"``, ``"Patchcore"``, ``"Stfpm"``, ``"Draem"``, ...).
        init_args: the model's own constructor arguments (``{"layers": ["layer1", "layer2"]}``, ...); the
            pre-/post-processor, evaluator, visualiser and ``pre_trained`` are defectgen's.
        backbone: the model's ``backbone`` argument (e.g. ``"resnet18"``, ``"wide_resnet50_2"``).
        backbone_weights: a local torchvision-layout backbone file for the networks the model wants pretrained
            (never downloaded), or ``"random"`` to accept random features; required when the model wants any.
        generator: a defectgen operator (instance, name, config dict or recipe file) as the model's synthetic-
            anomaly generator (DRAEM, GLASS); refused for models without one.
        image_size: side of the square images (the model's pre-processor works at this size; maps have it).
        channels: 1 or 3; gray images are repeated to three channels for the model.
        batch_size: training images per step.
        seed: seeds the initialisation, the batch order and the generator's defects.
    """

    FORMAT = FORMAT
    HELP = "any anomalib image model (PaDiM, PatchCore, STFPM, DRAEM, ...) trained by anomalib's engine, offline"
    MODEL_NAME = "anomalib"
    BACKBONE_ARGUMENT = "backbone_weights"  # the constructor argument a study's backbone_weights key sets
    BACKBONE_KEYWORDS = (RANDOM,)  # backbone_weights values that are not files
    STUDY_KEYS = ("model", "init_args", "backbone", "generator")  # study recipe keys that are constructor arguments
    _SIZE_HINT = False

    @classmethod
    def add_train_arguments(cls, parser) -> None:
        from .cli import add_anomalib_arguments

        add_anomalib_arguments(parser)

    @classmethod
    def train_command(cls, args) -> int:
        from .cli import run_train_anomalib

        return run_train_anomalib(args, cls)

    @classmethod
    def for_study(cls, defects: Any, **settings: Any) -> "AnomalibDetector":
        """A study cell's detector: a model with a generator and no ``generator`` key takes the family's
        defects as its generator; other models ignore the family."""
        from .models import takes_generator

        if settings.get("generator") is None and takes_generator(settings.get("model")):
            settings["generator"] = _pretext_op(defects)
        return cls(**settings)

    @classmethod
    def check_study_keys(cls, spec: Mapping[str, Any]) -> Dict[str, Any]:
        """The :data:`STUDY_KEYS` of a recipe entry, checked (``ValueError`` naming the key)."""
        from .models import check_init_args, model_class, takes_generator

        if "model" not in spec:
            raise ValueError("model: name the anomalib image model (e.g. Padim, Patchcore, Draem)")
        found = model_class(spec["model"])
        out = {"model": spec["model"], "init_args": check_init_args(found, spec.get("init_args"))}
        if spec.get("backbone") is not None:
            if not isinstance(spec["backbone"], str):
                raise ValueError(f"backbone must be a timm model name (e.g. resnet18), got {spec['backbone']!r}")
            out["backbone"] = spec["backbone"]
        if spec.get("generator") is not None:
            if not takes_generator(spec["model"]):
                raise ValueError(f"generator: anomalib's {spec['model']} makes no synthetic anomalies")
            out["generator"] = spec["generator"]
        return out

    @classmethod
    def makes_maps(cls, settings: Mapping[str, Any]) -> bool:
        """Whether a detector with these settings gives anomaly maps (pixel metrics need them)."""
        from .models import makes_maps

        return makes_maps(settings.get("model"))

    def __init__(self, model: Optional[str] = None, init_args: Optional[Mapping[str, Any]] = None,
                 backbone: Optional[str] = None, backbone_weights: Optional[Union[str, Path]] = None,
                 generator: Any = None, image_size: int = 256, channels: int = 3, batch_size: int = 32,
                 seed: int = 0):
        from .models import build_model
        from .training import seeded

        if model is None:
            raise ValueError("model: name the anomalib image model (e.g. Padim, Patchcore, Draem)")
        self.model = model
        self.init_args = dict(init_args or {})
        self.backbone = backbone
        self.backbone_weights = None if backbone_weights is None else str(backbone_weights)
        self.image_size = check_int(image_size, "image_size", 8)
        self.channels = check_channels(channels)
        self.batch_size = check_int(batch_size, "batch_size", 1)
        self.seed = check_int(seed, "seed", 0)
        self.generator = generator
        with seeded(self.seed):
            self.network, wanted = build_model(model, self.init_args, self.image_size, backbone,
                                               self.backbone_weights, generator)
        self.start = backbone_start(self.backbone_weights, wanted, backbone)
        self.history: List[Dict[str, float]] = []
        self.steps_trained = 0
        self.fitted = False

    # -- settings and records -----------------------------------------------------------------------------------
    def config(self) -> Dict[str, Any]:
        """The constructor arguments (JSON-able; an operator instance as a generator is kept as its config)."""
        return {"model": self.model, "init_args": dict(self.init_args), "backbone": self.backbone,
                "backbone_weights": self.backbone_weights, "generator": _generator_record(self.generator),
                "image_size": self.image_size, "channels": self.channels, "batch_size": self.batch_size,
                "seed": self.seed}

    def describe(self) -> Dict[str, Any]:
        """The "model" entry of an evaluation report: the anomalib model, its arguments, where its backbone
        weights came from (file and content hash, or random by opt-in) and its training."""
        from .models import makes_maps

        return {"detector": self.kind, "model": self.model, "init_args": dict(self.init_args),
                "backbone": self.backbone, "start": dict(self.start),
                "generator": _generator_record(self.generator), "makes_maps": makes_maps(self.model),
                "config": self.config(), "steps_trained": self.steps_trained}

    def __repr__(self) -> str:
        return (f"AnomalibDetector(model={self.model!r}, image_size={self.image_size}, "
                f"{'fitted' if self.fitted else 'not fitted'})")

    @property
    def device(self) -> torch.device:
        for tensor in list(self.network.parameters()) + list(self.network.buffers()):
            return tensor.device
        return torch.device("cpu")

    # -- training -------------------------------------------------------------------------------------------------
    def fit(self, data: ImageSource, steps: int = 100, device: Union[str, torch.device, None] = None,
            progress: Optional[bool] = None, callback: Optional[Callable[[Dict[str, float]], None]] = None
            ) -> "AnomalibDetector":
        """Train on normal images with anomalib's engine.

        Args:
            data: an MVTec-layout root (its ``train/good``), a folder of images, or a ``(N, C, S, S)`` tensor.
            steps: optimiser steps for models trained by gradient (0: the untrained network, the study's
                control); memory-bank models (PaDiM, PatchCore, ...) make their one pass over the data whatever
                the steps.
            device: where to train (``"auto"``, ``"cuda"``, ``"cpu"``); default: where the model is.
            progress: unused (the engine runs without a progress bar); accepted as the other kinds accept it.
            callback: called after every optimiser step with ``{"step", "loss"}``.
        """
        from .training import is_memory_bank, seeded, train_module

        steps = check_int(steps, "steps", 0)
        if device is not None:
            self.to(device)
        images = load_normal_images(data, self.image_size, self.channels)
        check_images(images, self.image_size, "training images")
        x = _three_channels(as_float(images, self.channels))
        if is_memory_bank(self.network) or steps > 0:
            with seeded(self.seed):
                records = train_module(self.network, x, steps, self.batch_size, self.device, self.seed, callback)
            offset = self.steps_trained
            self.history.extend({**r, "step": offset + r["step"]} for r in records)
            self.steps_trained = offset + (0 if is_memory_bank(self.network) else steps)
        self.network.eval()
        self.fitted = True
        return self

    # -- prediction -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> Prediction:
        """Raw image scores and anomaly maps at ``image_size`` (maps ``None`` for an image-only model), in the
        order of ``images``, on their device."""
        from .convert import to_prediction
        from .training import quiet

        check_images(images, self.image_size)
        if not self.fitted:
            raise RuntimeError("the detector is not fitted: call fit() (or load() a saved model) first")
        self.network.eval()
        x = _three_channels(as_float(images.to(self.device), self.channels))
        parts = []
        with quiet():
            for chunk in x.split(_CHUNK):
                parts.append(to_prediction(self.network(chunk), len(chunk), self.image_size))
        return Prediction.cat(parts).to(images.device)

    @torch.no_grad()
    def score(self, images: torch.Tensor) -> torch.Tensor:
        """Image anomaly scores ``(B,)``."""
        return self.predict(images).scores

    # -- persistence ----------------------------------------------------------------------------------------------
    def save(self, path: Union[str, Path]) -> Path:
        """Write the model (the anomalib module's tensors, settings, start record, history) atomically."""
        if not self.fitted:
            raise RuntimeError("nothing to save: the detector is not fitted yet")
        network = {k: v.detach().cpu() for k, v in self.network.state_dict().items() if not _generator_key(k)}
        state = {"format": FORMAT, "config": self.config(), "start": self.start, "history": self.history,
                 "steps_trained": self.steps_trained, "network": network}
        return save_state(state, path)

    def _restore(self, state: Dict[str, Any], config: Dict[str, Any]) -> None:
        from .models import build_model
        from .training import seeded

        for key, value in config.items():  # config() names the attributes the constructor sets
            setattr(self, key, value)
        with seeded(self.seed):  # the generator is not rebuilt: prediction does not use it
            self.network, _ = build_model(self.model, self.init_args, self.image_size, self.backbone, None, None,
                                          restoring=True)
        missing, unexpected = self.network.load_state_dict(state["network"], strict=False)
        missing = [k for k in missing if not _generator_key(k)]
        if missing or unexpected:
            raise ValueError(f"the saved {self.model} does not match the model anomalib builds now "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]}); was it saved with another "
                             "anomalib version?")
        self.network.eval()
        self.start = dict(state["start"])
        self.steps_trained = int(state["steps_trained"])
        self.fitted = True


def _three_channels(x: torch.Tensor) -> torch.Tensor:
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def _generator_key(key: str) -> bool:
    # a defectgen generator is set per run (and has no learned state): not part of the saved model
    return key.startswith(("augmenter.", "model.augmentor."))


def _generator_record(generator: Any) -> Any:
    """A generator as JSON-able data: a name, config dict or path as given; an operator as its config."""
    if generator is None or isinstance(generator, (str, dict, list)):
        return generator
    if isinstance(generator, Path):
        return str(generator)
    to_config = getattr(generator, "to_config", None)
    if callable(to_config):
        try:
            return to_config()
        except (TypeError, ValueError):
            pass
    return repr(generator)


def _pretext_op(defects: Any) -> Any:
    """A study family's defects as a generator: a CutPaste pretext name becomes its operators."""
    if isinstance(defects, str):
        from ..cutpaste.pretext import NAMED

        if defects in NAMED:
            from defectgen import OneOf

            from ..cutpaste.pretext import Pretext

            ops = Pretext(defects).ops
            return ops[0] if len(ops) == 1 else OneOf(ops)
    return defects


__all__ = ["AnomalibDetector", "FORMAT"]
