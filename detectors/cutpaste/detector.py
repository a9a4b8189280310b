"""CutPasteDetector: train on a pretext task, fit a Gaussian density on normal embeddings, score by distance.

Li, Sohn, Yoon, Pfister: "CutPaste: Self-Supervised Learning for Anomaly Detection and Localization",
CVPR 2021. Two stages:

1. Self-supervised training. A ResNet-18 (random init unless ``weights=`` names a local file) learns to
   classify normal images against synthetic defects that defectgen makes, batched, on the training device
   (:mod:`.pretext`). SGD with momentum and a cosine learning-rate schedule over a fixed number of steps; the
   model kept is the one at the end of the budget (nothing is selected on test data).
2. Density estimation. A Gaussian with Ledoit-Wolf covariance is fitted to the pooled embeddings of the
   normal training images (:mod:`.density`); the anomaly score is the Mahalanobis distance to it.

``level="image"`` works on whole images and localises with Grad-CAM of the score. ``level="patch"`` is the
paper's patch-level variant: it trains on random ``patch_size`` crops, scores every patch of a dense grid
(stride ``patch_stride``) with the density fitted on normal patches, takes the maximum as the image score and
upsamples the patch scores with Gaussian weights into the anomaly map (:mod:`.localization`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from defectgen.checks import check_channels, check_int, check_number, resolve_device
from defectgen.training import TrainingLoop, cosine_schedule

from ..backbone_file import saved_start, start_record
from ..base import AnomalyDetector, as_float, check_images
from ..data import ImageSource, load_normal_images
from ..errors import NotAModelFile
from ..registry import register_detector, save_state
from ..types import Prediction
from .cli import add_cutpaste_arguments, run_train_cutpaste
from .density import GaussianDensity
from .localization import gaussian_upsample, grad_cam, grid_size, patch_grid
from .network import DEFAULT_HEAD, CutPasteNet
from .pretext import NAMED, Pretext, PretextSpec

FORMAT = "defectgen.detectors.cutpaste/1"
"""Written into every saved model; :meth:`CutPasteDetector.load` refuses files without it."""

LEVELS = ("image", "patch")

_EVAL_CHUNK = 64      # images per forward pass when embedding / scoring
_PATCH_CHUNK = 512    # patches per forward pass in the patch-level variant


@register_detector("cutpaste")
class CutPasteDetector(AnomalyDetector):
    """The CutPaste anomaly detector (see the module docstring).

    Args:
        pretext: ``"cutpaste"``, ``"scar"``, ``"union"``, ``"3way"`` (the paper's), or any defectgen operator
            (instance, registered name or config dict) or list of them (one class each); see :mod:`.pretext`.
        image_size: side of the square images the model takes (inputs must have it; the data readers resize).
        channels: 1 (grayscale) or 3 (RGB) images; gray images are repeated to the encoder's three channels.
        level: ``"image"`` or ``"patch"`` (see the module docstring).
        patch_size: patch side for ``level="patch"`` (default ``image_size // 4``, the paper's 64 of 256).
        patch_stride: grid stride of the dense patch scoring (the paper's 4); ``(image_size - patch_size)``
            must be a multiple of it. :meth:`anomaly_map` and :meth:`score` can override it per call.
        head_layers: widths of the MLP projection head (the reference code's eight 512s and a 128).
        weights: optional local backbone file for the ResNet-18 encoder (:mod:`detectors.backbone_file`: e.g.
            the ``backbone.pt`` of ``defectgen pretrain --backbone resnet18``, or ImageNet weights); never
            downloaded. :meth:`describe` records it (path and content hash) under ``"start"``.
        batch_size: normal images per training step; each step trains on ``batch_size * num_classes`` images.
        learning_rate, momentum, weight_decay: SGD settings (the paper's 0.03, 0.9, 3e-5); the learning rate
            decays to zero on a cosine over the steps of each :meth:`fit`.
        fit_patches_per_image: for ``level="patch"``, grid patches per training image (drawn at random) that
            the density is fitted on.
        seed: seeds the network's initialisation, the batches and the defects; same seed, same model (on the
            same device and library versions).
    """

    FORMAT = FORMAT
    BACKBONE_ARGUMENT = "weights"  # the constructor argument a study's backbone_weights key sets
    HELP = "CutPaste self-supervised detector (Li et al. 2021) on a defectgen pretext task"
    MODEL_NAME = "CutPaste"

    @classmethod
    def add_train_arguments(cls, parser) -> None:
        add_cutpaste_arguments(parser)

    @classmethod
    def train_command(cls, args) -> int:
        return run_train_cutpaste(args, cls)

    @classmethod
    def for_study(cls, defects: PretextSpec, **settings: Any) -> "CutPasteDetector":
        """A study cell's detector: the family's defects are its pretext task."""
        return cls(pretext=defects, **settings)

    def __init__(self, pretext: PretextSpec = "3way", image_size: int = 256, channels: int = 3,
                 level: str = "image", patch_size: Optional[int] = None, patch_stride: int = 4,
                 head_layers: Sequence[int] = DEFAULT_HEAD, weights: Optional[Union[str, Path]] = None,
                 batch_size: int = 32, learning_rate: float = 0.03, momentum: float = 0.9,
                 weight_decay: float = 3e-5, fit_patches_per_image: int = 64, seed: int = 0):
        self.image_size = check_int(image_size, "image_size", 8)
        self.channels = check_channels(channels)
        if level not in LEVELS:
            raise ValueError(f"level must be one of {list(LEVELS)}, got {level!r}")
        self.level = level
        self.patch_size = check_int(patch_size if patch_size is not None else image_size // 4, "patch_size", 8)
        self.patch_stride = check_int(patch_stride, "patch_stride", 1)
        if level == "patch":
            grid_size(self.image_size, self.patch_size, self.patch_stride)  # raises if the grid does not tile
        self.head_layers = [check_int(w, "head_layers[]", 1) for w in head_layers]
        self.batch_size = check_int(batch_size, "batch_size", 2)
        self.learning_rate = check_number(learning_rate, "learning_rate", 0.0)
        self.momentum = check_number(momentum, "momentum", 0.0, 1.0)
        self.weight_decay = check_number(weight_decay, "weight_decay", 0.0)
        self.fit_patches_per_image = check_int(fit_patches_per_image, "fit_patches_per_image", 1)
        self.seed = check_int(seed, "seed", 0)
        self.weights = None if weights is None else str(weights)
        self.pretext: Optional[Pretext] = Pretext(pretext, scar_reference=self._scar_reference())
        self.pretext_record: Dict[str, Any] = self.pretext.describe()
        self._build_network(self.pretext.num_classes, weights)
        # where the encoder's starting weights came from (a report says SSL-initialised or random)
        self.start: Dict[str, Any] = start_record(weights, "resnet18")
        self.density = GaussianDensity()
        self.history: List[Dict[str, float]] = []
        self.steps_trained = 0

    # -- set-up -------------------------------------------------------------------------------------------------
    def _scar_reference(self) -> float:
        # the paper's scar sizes are pixels on a 256 px image; a patch of a 256 px image keeps those pixels
        trained_side = self.patch_size if self.level == "patch" else self.image_size
        return 256.0 * trained_side / self.image_size

    def _build_network(self, num_classes: int, weights) -> None:
        with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the global stream
            torch.manual_seed(self.seed)
            self.network = CutPasteNet(num_classes, self.head_layers, weights)
        self.num_classes = num_classes

    def to(self, device: Union[str, torch.device]) -> "CutPasteDetector":
        """Move the network and the density to ``device`` (``"auto"``: CUDA when available)."""
        device = resolve_device(device)
        self.network.to(device)
        self.density.to(device)
        return self

    def config(self) -> Dict[str, Any]:
        """The constructor arguments (JSON-able); a saved model records them."""
        return {"image_size": self.image_size, "channels": self.channels, "level": self.level,
                "patch_size": self.patch_size, "patch_stride": self.patch_stride, "head_layers": self.head_layers,
                "weights": self.weights, "batch_size": self.batch_size, "learning_rate": self.learning_rate,
                "momentum": self.momentum, "weight_decay": self.weight_decay,
                "fit_patches_per_image": self.fit_patches_per_image, "seed": self.seed}

    def describe(self) -> Dict[str, Any]:
        """The "model" entry of an evaluation report."""
        return {"detector": "cutpaste", "pretext": self.pretext_record["name"], "config": self.config(),
                "start": dict(self.start), "steps_trained": self.steps_trained}

    def __repr__(self) -> str:
        state = f"trained {self.steps_trained} steps" + (", fitted" if self.density.fitted else ", not fitted")
        return (f"CutPasteDetector(pretext={self.pretext_record['name']!r}, image_size={self.image_size}, "
                f"channels={self.channels}, level={self.level!r}; {state})")

    # -- training -------------------------------------------------------------------------------------------------
    def fit(self, data: ImageSource, steps: int = 256, device: Union[str, torch.device, None] = None,
            progress: Optional[bool] = None, callback: Optional[Callable[[Dict[str, float]], None]] = None,
            checkpoint: Optional[Union[str, Path]] = None, checkpoint_every: int = 0,
            resume: bool = False) -> "CutPasteDetector":
        """Train on the pretext task for ``steps`` steps, then fit the density on ``data``'s embeddings.

        Args:
            data: normal images: an MVTec-layout root (its ``train/good``), a folder of images (resized to
                ``image_size``), or a ``(N, C, image_size, image_size)`` tensor (uint8, or float in [0, 1]).
            steps: SGD steps; ``0`` keeps the current (e.g. random) weights and only fits the density, the
                "untrained network" control. Training continues from the current weights.
            device: where to train (``"auto"``, ``"cuda"``, ``"cpu"``...); default: where the network is.
            progress: show a progress bar with loss and accuracy on stderr (default: when it is a terminal).
            callback: called after every step with ``{"step", "loss", "accuracy", "lr"}``.
            checkpoint: file for training checkpoints (network, optimiser, schedule, batch generator), written
                every ``checkpoint_every`` steps and after the last one.
            resume: continue the interrupted ``fit`` whose ``checkpoint`` this is (same detector settings, same
                ``steps``); the result is the model the uninterrupted run gives.
        """
        steps = check_int(steps, "steps", 0)
        if device is not None:
            self.to(device)
        images = load_normal_images(data, self.image_size, self.channels).to(self.device)
        check_images(images, self.image_size, "training images")
        if len(images) < 2:
            raise ValueError(f"need at least 2 normal training images, got {len(images)}")
        if steps:
            if self.pretext is None:
                raise ValueError(f"this model's pretext {self.pretext_record['name']!r} could not be rebuilt from "
                                 "the saved file; create a new detector with pretext= to train")
            self._train(images, steps, progress, callback, checkpoint, checkpoint_every, resume)
        elif resume:
            raise ValueError("resume needs steps > 0 (the run to resume)")
        self._fit_density(images)
        return self

    def _train(self, images: torch.Tensor, steps: int, progress: Optional[bool], callback, checkpoint,
               checkpoint_every: int, resume: bool) -> None:
        network = self.network
        start = self.steps_trained
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + start)
        optimiser = torch.optim.SGD(network.parameters(), lr=self.learning_rate, momentum=self.momentum,
                                    weight_decay=self.weight_decay)
        loop = TrainingLoop(network, optimiser, cosine_schedule(optimiser, steps), history=self.history,
                            label="train", unit="step", progress=progress, callback=callback,
                            checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                            extra_state=lambda: {"generator": generator.get_state(), "start": start,
                                                 "steps": steps})
        if resume:
            if checkpoint is None:
                raise ValueError("resume needs the checkpoint= file of the interrupted run")
            extra = loop.restore()
            if int(extra["steps"]) != steps:
                raise ValueError(f"the checkpoint is of a {int(extra['steps'])}-step run, not {steps} steps")
            generator.set_state(extra["generator"])
            start = int(extra["start"])
            self.steps_trained = start + loop.step

        def step(_: int):
            normals = self._training_batch(images, generator)
            batch, labels = self.pretext.make_batch(normals, generator)
            logits, _ = network(batch)
            return F.cross_entropy(logits, labels), {"accuracy": (logits.argmax(1) == labels).float().mean()}

        def counted(record):  # the detector's step count follows the loop's, also when a callback raises
            self.steps_trained = start + loop.step
            if callback is not None:
                callback(record)

        loop.callback = counted
        loop.run(steps, step, first_record_step=start)

    def _training_batch(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``batch_size`` normal images (or random patches of them), float in [0, 1], on the training device."""
        index = torch.randint(len(images), (self.batch_size,), generator=generator)
        chosen = images[index.to(images.device)]
        if self.level == "patch":
            # one gather for the whole batch: row and column indices of each sample's crop
            corners = torch.randint(self.image_size - self.patch_size + 1, (self.batch_size, 2), generator=generator)
            offsets = torch.arange(self.patch_size)
            rows, cols = (corners[:, :1] + offsets).to(chosen.device), (corners[:, 1:] + offsets).to(chosen.device)
            batch = torch.arange(len(chosen), device=chosen.device)[:, None, None, None]
            channel = torch.arange(chosen.shape[1], device=chosen.device)[None, :, None, None]
            chosen = chosen[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]
        return _to_float(chosen)

    @torch.no_grad()
    def _fit_density(self, images: torch.Tensor) -> None:
        self.network.eval()
        if self.level == "image":
            embeddings = torch.cat([self.network.embed(_to_float(chunk)) for chunk in images.split(_EVAL_CHUNK)])
        else:
            generator = torch.Generator().manual_seed(self.seed + 7)
            g = grid_size(self.image_size, self.patch_size, self.patch_stride)
            take = min(self.fit_patches_per_image, g * g)
            embeddings = []
            # enough images per chunk to fill one forward pass with their chosen patches
            for chunk in images.split(max(1, _PATCH_CHUNK // take)):
                crops = patch_grid(_to_float(chunk), self.patch_size, self.patch_stride)
                chosen = torch.cat([torch.randperm(g * g, generator=generator)[:take] + i * g * g
                                    for i in range(len(chunk))])
                embeddings.append(self.network.embed(crops[chosen.to(crops.device)]))
            embeddings = torch.cat(embeddings)
        self.density = GaussianDensity().fit(embeddings)

    # -- scoring -------------------------------------------------------------------------------------------------
    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, self.image_size)
        if not self.density.fitted:
            raise RuntimeError("the detector is not fitted: call fit() (or load() a saved model) first")
        return as_float(images.to(self.device), self.channels)

    def _stride(self, stride: Optional[int]) -> int:
        stride = self.patch_stride if stride is None else check_int(stride, "stride", 1)
        grid_size(self.image_size, self.patch_size, stride)
        return stride

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled encoder embeddings ``(B, 512)`` of whole images (on the input's device)."""
        x = self._prepare(images)
        self.network.eval()
        return torch.cat([self.network.embed(chunk) for chunk in x.split(_EVAL_CHUNK)]).to(images.device)

    @torch.no_grad()
    def patch_scores(self, images: torch.Tensor, stride: Optional[int] = None) -> torch.Tensor:
        """Patch-level model: the score of every grid patch, ``(B, 1, G, G)``."""
        if self.level != "patch":
            raise ValueError("patch_scores needs a level='patch' detector")
        stride = self._stride(stride)
        x = self._prepare(images)
        self.network.eval()
        g = grid_size(self.image_size, self.patch_size, stride)
        out = []
        for chunk in x.split(max(1, _PATCH_CHUNK // (g * g))):
            crops = patch_grid(chunk, self.patch_size, stride)
            scores = torch.cat([self.density.score(self.network.embed(c)) for c in crops.split(_PATCH_CHUNK)])
            out.append(scores.view(len(chunk), 1, g, g))
        return torch.cat(out).to(images.device)

    @torch.no_grad()
    def score(self, images: torch.Tensor, stride: Optional[int] = None) -> torch.Tensor:
        """Anomaly scores ``(B,)`` (higher = more anomalous; float32, on the input's device).

        Image level: Mahalanobis distance of each image's embedding. Patch level: the largest patch score.
        """
        if self.level == "patch":
            return self.patch_scores(images, stride).flatten(1).amax(1)
        x = self._prepare(images)
        self.network.eval()
        scores = torch.cat([self.density.score(self.network.embed(chunk)) for chunk in x.split(_EVAL_CHUNK)])
        return scores.to(images.device)

    def anomaly_map(self, images: torch.Tensor, stride: Optional[int] = None) -> torch.Tensor:
        """Pixel anomaly maps ``(B, 1, H, W)`` (float32, on the input's device).

        Image level: Grad-CAM of the anomaly score on the last conv block. Patch level: the patch scores,
        upsampled with Gaussian weights (``stride`` overrides ``patch_stride`` for this call).
        """
        return self.predict(images, stride).maps

    def predict(self, images: torch.Tensor, stride: Optional[int] = None) -> Prediction:
        """Scores and maps (a :class:`~detectors.types.Prediction`), as :meth:`score` and :meth:`anomaly_map`
        give them, from one pass: the patch scores (patch level) or the forward pass Grad-CAM differentiates
        (image level) are computed once."""
        if self.level == "patch":
            stride = self._stride(stride)
            patches = self.patch_scores(images, stride)
            return Prediction(patches.flatten(1).amax(1), gaussian_upsample(patches, self.patch_size, stride))
        x = self._prepare(images)
        self.network.eval()

        def score_fn(features: torch.Tensor) -> torch.Tensor:
            return self.density.score(self.network.pool(features))

        scores, maps = [], []
        for chunk in x.split(_EVAL_CHUNK):
            cam, chunk_scores = grad_cam(self.network.feature_map, score_fn, chunk)
            maps.append(cam)
            scores.append(chunk_scores)
        return Prediction(torch.cat(scores).to(images.device), torch.cat(maps).to(images.device))

    # -- persistence ----------------------------------------------------------------------------------------------
    def save(self, path: Union[str, Path]) -> Path:
        """Write the model (network, density, settings, pretext, training history) to ``path`` atomically."""
        if not self.density.fitted:
            raise RuntimeError("nothing to save: the detector is not fitted yet")
        state = {"format": FORMAT, "config": self.config(), "num_classes": self.num_classes,
                 "pretext": self.pretext_record, "start": self.start, "steps_trained": self.steps_trained,
                 "history": self.history,
                 "network": {k: v.cpu() for k, v in self.network.state_dict().items()},
                 "density": self.density.state_dict()}
        return save_state(state, path)

    def _restore(self, state: Dict[str, Any], config: Dict[str, Any]) -> None:
        record = state["pretext"]
        pretext = _rebuild_pretext(record)
        for key, value in config.items():  # config() names the attributes the constructor sets
            setattr(self, key, value)
        self.pretext = None
        if pretext is not None:
            try:
                self.pretext = Pretext(pretext, scar_reference=self._scar_reference())
            except (ValueError, TypeError, KeyError):  # e.g. an operator config that held arrays
                self.pretext = None
        self.pretext_record = record
        with torch.random.fork_rng(devices=[]):
            self.network = CutPasteNet(state["num_classes"], self.head_layers)
        self.num_classes = state["num_classes"]
        self.network.load_state_dict(state["network"])
        self.network.eval()
        self.density = GaussianDensity().load_state_dict(state["density"])
        self.steps_trained = state["steps_trained"]
        self.start = saved_start(state, self.weights, "resnet18")


def _rebuild_pretext(record: Dict[str, Any]):
    """The pretext spec a saved record rebuilds to, or ``None`` when an operator had no plain config."""
    if record["name"] in NAMED:
        return record["name"]
    if any(config is None for config in record["ops"]):
        return None
    return list(record["ops"])


def _to_float(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(255) if images.dtype == torch.uint8 else images.float()


__all__ = ["CutPasteDetector", "FORMAT", "LEVELS", "NotAModelFile"]
