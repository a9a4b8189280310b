"""FasterRCNNDetector: torchvision's Faster R-CNN trained on synthetic or real defect boxes, on one interface.

Training data is any source of :class:`~detectors.types.TrainingBatch` (:mod:`detectors.data.sources`): defects
made on the fly over OK images (a fresh draw every epoch, batched on the training device), a folder that
``defectgen generate`` wrote, real labelled sets, or synthetic plus k real images; a
:class:`~detectors.types.LabelledSet` is wrapped as a source. Training runs on the shared
:class:`~defectgen.training.TrainingLoop` (progress with loss and ETA, callbacks, checkpoint and resume), with
AdamW, a linear warm-up and a cosine decay, and seeded: the same seed gives the same model on the same device.

The image-level score of a prediction is the highest box score (0 where no box is found), so an object detector
sits on the same image-AUROC axis as the anomaly detectors.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch

from defectgen.checks import check_channels, check_int, check_number
from defectgen.training import TrainingLoop, cosine_schedule

from ..backbone_file import saved_start, start_record
from ..base import ObjectDetector, as_float, check_images
from ..registry import register_detector, save_state
from ..types import LabelledSet, Prediction, TrainingBatch
from .network import BACKBONE_NORMS, BACKBONES, DEFAULT_ANCHORS, TORCHVISION_NAMES, build_faster_rcnn

FORMAT = "defectgen.detectors.fasterrcnn/1"
_PREDICT_CHUNK = 16


@register_detector("fasterrcnn")
class FasterRCNNDetector(ObjectDetector):
    """Faster R-CNN (torchvision) for defect boxes (see the module docstring).

    Args:
        class_names: the defect classes (ids ``1..K``); or give ``num_classes`` for ``class_1..class_K``.
        image_size: side of the square images it takes (sources resize to it).
        channels: 1 (gray, repeated to the network's three channels) or 3.
        backbone: ``"mobilenet_v3"`` (MobileNet-v3-Large FPN, CPU-friendly; default) or ``"resnet50"``.
        anchor_sizes: RPN anchor sides in pixels (five; see :mod:`.network`).
        weights_backbone: optional local backbone file (:mod:`detectors.backbone_file`): a torchvision
            ``mobilenet_v3_large`` / ``resnet50`` state_dict as ``backbone`` says, head optional (e.g. the
            ``backbone.pt`` of ``defectgen pretrain``); never downloaded. :meth:`describe` records it (path and
            content hash) under ``"start"``.
        backbone_norm: how the backbone file's batch norms enter the network (:mod:`.network`): ``"frozen"``
            (torchvision's pretrained layout, for ImageNet weights: batch norm frozen, the last
            ``trainable_backbone_layers`` blocks train, default 3) or ``"group"`` (the random-init network, its
            group norms converted from the file's batch norms; every layer trains: measured far better for
            ``defectgen pretrain`` backbones, docs/pretrain.md). Ignored without a file.
        weights: optional local file to start from: a model saved by :meth:`save` (same classes and backbone).
        batch_size: images per step.
        learning_rate, weight_decay: AdamW settings; the rate warms up linearly over ``warmup_steps`` and
            decays to zero on a cosine over the rest of each :meth:`fit`.
        flip: flip each training image horizontally / vertically at random (boxes follow): defects rarely
            have a preferred orientation and the sets are small.
        seed: seeds the initialisation, the batch order, the defects and the sampling inside the network.
    """

    FORMAT = FORMAT
    BACKBONE_ARGUMENT = "weights_backbone"  # the constructor argument a study's backbone_weights key sets
    HELP = "Faster R-CNN (torchvision, MobileNet-v3 or ResNet-50 FPN) on synthetic and/or real defect boxes"
    MODEL_NAME = "Faster R-CNN"
    _SIZE_HINT = False  # its message never named --image-size; kept as it was

    @classmethod
    def add_model_arguments(cls, parser) -> None:
        parser.add_argument("--backbone", choices=("mobilenet_v3", "resnet50"), default="mobilenet_v3",
                            help="(default: %(default)s)")
        parser.add_argument("--weights-backbone", metavar="FILE", type=Path,
                            help="local backbone file: a torchvision mobilenet_v3_large / resnet50 state_dict (as "
                                 "--backbone says), head optional: the backbone.pt of 'defectgen pretrain', or "
                                 "ImageNet weights; never downloaded (default: random init)")
        parser.add_argument("--backbone-norm", choices=BACKBONE_NORMS, default="frozen",
                            help="how --weights-backbone's batch norms enter the network: 'frozen' (torchvision's "
                                 "layout for ImageNet weights) or 'group' (converted to group norm, every layer "
                                 "trains; use it for a 'defectgen pretrain' backbone) (default: %(default)s)")

    @classmethod
    def model_settings(cls, args) -> Dict[str, Any]:
        return {"backbone": args.backbone,
                "weights_backbone": None if args.weights_backbone is None else str(args.weights_backbone),
                "backbone_norm": args.backbone_norm}

    @classmethod
    def cli_fit_options(cls, args) -> Dict[str, Any]:
        # the last finished epoch, which --resume continues from
        return {"checkpoint": args.out / "checkpoint.pt", "resume": args.resume}

    def __init__(self, class_names: Optional[Sequence[str]] = None, num_classes: Optional[int] = None,
                 image_size: int = 320, channels: int = 3, backbone: str = "mobilenet_v3",
                 anchor_sizes: Sequence[int] = DEFAULT_ANCHORS, weights_backbone: Optional[Union[str, Path]] = None,
                 weights: Optional[Union[str, Path]] = None, trainable_backbone_layers: Optional[int] = None,
                 batch_size: int = 4, learning_rate: float = 1e-3, weight_decay: float = 1e-4,
                 warmup_steps: int = 100, flip: bool = True, box_score_thresh: float = 0.001,
                 detections_per_image: int = 100, seed: int = 0, backbone_norm: str = "frozen"):
        self._set_config(class_names, num_classes, image_size, channels, backbone, anchor_sizes, weights_backbone,
                         weights, trainable_backbone_layers, batch_size, learning_rate, weight_decay, warmup_steps,
                         flip, box_score_thresh, detections_per_image, seed, backbone_norm)
        self.network = self._build(load_backbone=True)
        # where the backbone's starting weights came from (a report says SSL-initialised or random)
        self.start: Dict[str, Any] = start_record(weights_backbone, TORCHVISION_NAMES[self.backbone])
        if weights is not None:
            self._load_weights(Path(weights))
        self.history: List[Dict[str, float]] = []
        self.epochs_trained = 0
        self.steps_trained = 0
        self.images_seen = 0  # training images shown so far, with repeats (the summed batch sizes)

    def _set_config(self, class_names, num_classes, image_size, channels, backbone, anchor_sizes, weights_backbone,
                    weights, trainable_backbone_layers, batch_size, learning_rate, weight_decay, warmup_steps, flip,
                    box_score_thresh, detections_per_image, seed, backbone_norm="frozen") -> None:
        if class_names is None:
            if num_classes is None:
                raise ValueError("give class_names (or num_classes)")
            class_names = [f"class_{k + 1}" for k in range(check_int(num_classes, "num_classes", 1))]
        elif num_classes is not None and int(num_classes) != len(class_names):
            raise ValueError(f"num_classes={num_classes} but {len(class_names)} class_names")
        self.class_names = [str(c) for c in class_names]
        if not self.class_names or len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class_names must be distinct and non-empty, got {self.class_names}")
        self.image_size = check_int(image_size, "image_size", 32)
        self.channels = check_channels(channels)
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {list(BACKBONES)}, got {backbone!r}")
        self.backbone = backbone
        self.anchor_sizes = [check_int(s, "anchor_sizes[]", 1) for s in anchor_sizes]
        self.weights_backbone = None if weights_backbone is None else str(weights_backbone)
        self.trainable_backbone_layers = trainable_backbone_layers
        if backbone_norm not in BACKBONE_NORMS:
            raise ValueError(f"backbone_norm must be one of {list(BACKBONE_NORMS)}, got {backbone_norm!r}")
        self.backbone_norm = backbone_norm
        self.batch_size = check_int(batch_size, "batch_size", 1)
        self.learning_rate = check_number(learning_rate, "learning_rate", 0.0)
        self.weight_decay = check_number(weight_decay, "weight_decay", 0.0)
        self.warmup_steps = check_int(warmup_steps, "warmup_steps", 0)
        self.flip = bool(flip)
        self.box_score_thresh = check_number(box_score_thresh, "box_score_thresh", 0.0, 1.0)
        self.detections_per_image = check_int(detections_per_image, "detections_per_image", 1)
        self.seed = check_int(seed, "seed", 0)
        self.weights = None if weights is None else str(weights)

    def _build(self, load_backbone: bool):
        """The network; ``load_backbone=False`` keeps a pretrained backbone's layout (frozen batch norm, or group
        norm) without reading its file, for a saved model whose weights replace it anyway."""
        with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the global stream
            torch.manual_seed(self.seed)
            network = build_faster_rcnn(len(self.class_names), self.image_size, self.backbone, self.anchor_sizes,
                                        self.weights_backbone if load_backbone else None,
                                        self.trainable_backbone_layers, self.box_score_thresh,
                                        self.detections_per_image, backbone_norm=self.backbone_norm,
                                        frozen_norm=self.weights_backbone is not None
                                        and self.backbone_norm == "frozen")
        return network.eval()

    def _load_weights(self, path: Path) -> None:
        state = self.read_state(path)
        if state["class_names"] != self.class_names or state["config"]["backbone"] != self.backbone:
            raise ValueError(f"weights {str(path)!r} are a {state['config']['backbone']} model of classes "
                             f"{state['class_names']}, not {self.backbone} of {self.class_names}")
        self.network.load_state_dict(state["network"])

    # -- interface ------------------------------------------------------------------------------------------------
    def config(self) -> Dict[str, Any]:
        return {"class_names": list(self.class_names), "image_size": self.image_size, "channels": self.channels,
                "backbone": self.backbone, "anchor_sizes": list(self.anchor_sizes),
                "weights_backbone": self.weights_backbone, "backbone_norm": self.backbone_norm,
                "weights": self.weights, "trainable_backbone_layers": self.trainable_backbone_layers,
                "batch_size": self.batch_size,
                "learning_rate": self.learning_rate, "weight_decay": self.weight_decay,
                "warmup_steps": self.warmup_steps, "flip": self.flip, "box_score_thresh": self.box_score_thresh,
                "detections_per_image": self.detections_per_image, "seed": self.seed}

    def describe(self) -> Dict[str, Any]:
        return {"detector": "fasterrcnn", "backbone": self.backbone, "class_names": list(self.class_names),
                "config": self.config(), "start": dict(self.start), "epochs_trained": self.epochs_trained,
                "steps_trained": self.steps_trained, "images_seen": self.images_seen}

    def __repr__(self) -> str:
        return (f"FasterRCNNDetector({self.backbone}, classes={self.class_names}, image_size={self.image_size}; "
                f"trained {self.steps_trained} steps, {self.images_seen} images seen)")

    # -- training -------------------------------------------------------------------------------------------------
    def fit(self, data, epochs: Optional[int] = None, images_seen: Optional[int] = None,
            device: Union[str, torch.device, None] = None, progress: Optional[bool] = None,
            callback: Optional[Callable[[Dict[str, float]], None]] = None,
            checkpoint: Optional[Union[str, Path]] = None, resume: bool = False) -> "FasterRCNNDetector":
        """Train for ``epochs`` passes over ``data``, or for ``images_seen`` images (one of them; neither: 30
        epochs).

        A length in images seen is the fewest steps that show that many images (``images_seen .. images_seen +
        batch_size - 1``; :func:`~detectors.data.sources.steps_to_see`: ``ceil(images_seen / batch_size)`` when
        every batch is full) whatever the data's size, so runs on different data are compared at equal cost; an
        epoch is :func:`~detectors.data.sources.steps_per_epoch` steps of the source. Either way the steps walk
        the source with :func:`~detectors.data.sources.training_batches`, and the learning-rate schedule spans
        them.

        Args:
            data: a training source (:mod:`detectors.data.sources`: synthetic, labelled or mixed) or a
                :class:`~detectors.types.LabelledSet`; its class names must be this detector's.
            epochs: passes over ``data``; images_seen: training images instead (counted with repeats).
            device: where to train (``"auto"``, ``"cuda"``, ``"cpu"``...); default: where the network is.
            progress: progress bar with loss and ETA on stderr (default: when it is a terminal).
            callback: called after every step with ``{"step", "epoch", "images_seen", "loss", ...}``
                (``images_seen``: the detector's total so far).
            checkpoint: file written after every epoch (network, optimiser, schedule, RNG state).
            resume: continue the interrupted ``fit`` whose ``checkpoint`` this is (same settings and length).
        """
        from ..data.sources import steps_per_epoch, steps_to_see, training_batches, training_length

        epochs, images_seen = training_length(epochs, images_seen, default_epochs=30)
        if device is not None:
            self.to(device)
        source = self._as_source(data)
        spe = steps_per_epoch(source, self.batch_size)
        steps = steps_to_see(source, images_seen, self.batch_size) if images_seen is not None else epochs * spe
        length = f"{epochs}-epoch" if images_seen is None else f"{images_seen}-images-seen"
        network = self.network
        params = [p for p in network.parameters() if p.requires_grad]
        optimiser = torch.optim.AdamW(params, lr=self.learning_rate, weight_decay=self.weight_decay)
        schedule = cosine_schedule(optimiser, steps, warmup=min(self.warmup_steps, steps // 4))
        start_epochs, start_steps, start_images = self.epochs_trained, self.steps_trained, self.images_seen
        counted_images = {"fit": 0}  # images of this fit's finished steps
        flips = torch.Generator().manual_seed(self.seed * 7919 + start_epochs)
        loop = TrainingLoop(network, optimiser, schedule, history=self.history, label="train fasterrcnn",
                            unit="step", progress=progress, checkpoint=checkpoint, checkpoint_every=spe,
                            extra_state=lambda: {"flips": flips.get_state(), "rng": torch.get_rng_state(),
                                                 "epochs": epochs, "images_seen": images_seen,
                                                 "total_steps": steps, "start_epochs": start_epochs,
                                                 "start_steps": start_steps, "start_images": start_images,
                                                 "fit_images": counted_images["fit"]})
        with torch.random.fork_rng(devices=[]):
            # torchvision samples RPN / box proposals with the global generator: seed it for this fit only
            torch.manual_seed(self.seed * 1_000_003 + start_epochs)
            if resume:
                if checkpoint is None:
                    raise ValueError("resume needs the checkpoint= file of the interrupted run")
                extra = loop.restore()
                # checkpoints before images_seen existed hold only "epochs"
                saved_steps = int(extra.get("total_steps", int(extra["epochs"] or 0) * spe))
                saved = (f"{extra['epochs']}-epoch" if extra.get("images_seen") is None
                         else f"{extra['images_seen']}-images-seen")
                if saved_steps != steps or saved != length:
                    raise ValueError(f"the checkpoint is of a {saved} run ({saved_steps} steps), not a {length} run "
                                     f"({steps} steps)")
                flips.set_state(extra["flips"])
                torch.set_rng_state(extra["rng"])
                start_epochs, start_steps = int(extra["start_epochs"]), int(extra["start_steps"])
                start_images = int(extra.get("start_images", 0))
                counted_images["fit"] = int(extra.get("fit_images", 0))
            batches = training_batches(source, self.batch_size, steps, start_step=loop.step,
                                       first_epoch=start_epochs)

            def step(i: int):
                batch = next(batches)
                images, targets = self._targets(batch, flips)
                losses = network(images, targets)
                counted_images["fit"] += len(images)
                return sum(losses.values()), {"epoch": start_epochs + i // spe + 1,
                                              "images_seen": start_images + counted_images["fit"],
                                              **{k: v.detach() for k, v in losses.items()}}

            def counted(record):
                self.steps_trained = start_steps + loop.step
                self.epochs_trained = start_epochs + loop.step // spe
                self.images_seen = start_images + counted_images["fit"]
                if callback is not None:
                    callback(record)

            loop.callback = counted
            loop.run(steps, step, first_record_step=start_steps)
        return self

    def _as_source(self, data):
        if isinstance(data, LabelledSet):
            from ..data.sources import LabelledSource

            data = LabelledSource(data, self.image_size, device=self.device, seed=self.seed)
        if not hasattr(data, "epoch") or not hasattr(data, "class_names"):
            raise TypeError("data must be a LabelledSet or a training source from detectors.data.sources, got "
                            f"{type(data).__name__}")
        if list(data.class_names) != self.class_names:
            raise ValueError(f"the training data's classes {list(data.class_names)} are not this detector's "
                             f"{self.class_names}; map them (LabelledSet.mapped / agnostic) or build the detector "
                             "with the data's class names")
        if len(data) == 0:
            raise ValueError("the training data holds no images")
        return data

    def _targets(self, batch: TrainingBatch, flips: torch.Generator):
        """torchvision's input: a list of float images in [0, 1] (3 channels) and their target dicts."""
        images = self._network_input(batch.images.to(self.device))
        size = images.shape[-1]
        boxes = [b.to(self.device, torch.float32) for b in batch.boxes]
        labels = [lab.to(self.device, torch.int64) for lab in batch.labels]
        if self.flip:
            flip = torch.rand(len(images), 2, generator=flips) < 0.5
            h, v = flip[:, 0].to(self.device), flip[:, 1].to(self.device)
            images = torch.where(h[:, None, None, None], images.flip(-1), images)
            images = torch.where(v[:, None, None, None], images.flip(-2), images)
            boxes = [_flip_boxes(b, bool(fh), bool(fv), size) for b, fh, fv in zip(boxes, flip[:, 0], flip[:, 1])]
        targets = []
        for b, lab in zip(boxes, labels):
            keep = (b[:, 2] - b[:, 0] >= 1) & (b[:, 3] - b[:, 1] >= 1)  # torchvision rejects degenerate boxes
            targets.append({"boxes": b[keep], "labels": lab[keep]})
        return list(images), targets

    def _network_input(self, images: torch.Tensor) -> torch.Tensor:
        """Float [0, 1] images in the model's channels, repeated to the three channels torchvision's model takes."""
        return as_float(images, self.channels).expand(-1, 3, -1, -1)

    # -- prediction -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> Prediction:
        """Boxes (input pixels), box scores and class ids per image; the image score is the top box score."""
        check_images(images, self.image_size)
        self.network.eval()
        boxes, scores, labels = [], [], []
        for chunk in images.split(_PREDICT_CHUNK):
            for out in self.network(list(self._network_input(chunk.to(self.device)))):
                boxes.append(out["boxes"].to(images.device))
                scores.append(out["scores"].to(images.device))
                labels.append(out["labels"].to(images.device))
        return Prediction.from_boxes(boxes, scores, labels, device=images.device)

    # -- persistence ----------------------------------------------------------------------------------------------
    def save(self, path: Union[str, Path]) -> Path:
        """Write the model (network, settings, classes, training history) to ``path`` atomically."""
        state = {"format": FORMAT, "config": self.config(), "class_names": list(self.class_names),
                 "network": {k: v.cpu() for k, v in self.network.state_dict().items()}, "start": self.start,
                 "history": self.history, "epochs_trained": self.epochs_trained, "steps_trained": self.steps_trained,
                 "images_seen": self.images_seen}
        return save_state(state, path)

    def _restore(self, state: Dict[str, Any], config: Dict[str, Any]) -> None:
        self._set_config(num_classes=None, **config)
        self.network = self._build(load_backbone=False)  # the saved weights replace any starting files
        self.network.load_state_dict(state["network"])
        self.epochs_trained = int(state["epochs_trained"])
        self.steps_trained = int(state["steps_trained"])
        self.images_seen = int(state.get("images_seen", 0))  # files saved before it was counted: 0
        self.start = saved_start(state, self.weights_backbone, TORCHVISION_NAMES[self.backbone])


def _flip_boxes(boxes: torch.Tensor, horizontal: bool, vertical: bool, size: int) -> torch.Tensor:
    if horizontal:
        boxes = torch.stack([size - boxes[:, 2], boxes[:, 1], size - boxes[:, 0], boxes[:, 3]], 1)
    if vertical:
        boxes = torch.stack([boxes[:, 0], size - boxes[:, 3], boxes[:, 2], size - boxes[:, 1]], 1)
    return boxes


__all__ = ["FasterRCNNDetector", "FORMAT"]
