"""YOLODetector: an ultralytics YOLO object detector trained on defectgen data, behind the detector interface.

ultralytics (AGPL-3.0) is an optional extra (``pip install 'defectgen[yolo]'``): this module imports without it,
and the detector asks for it when it is created. What the wrapper decides (data in the run folder, fresh synthetic
defects every epoch, offline, seeded, the model kept, optimiser steps, length, resume, prediction, saves) and why
is in ``docs/yolo.md``; the run folder is :mod:`.run_folder`, the fit on ultralytics' trainer :mod:`.training`,
the network :mod:`.network`.
"""
from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import torch

from defectgen.checks import check_channels, check_int, check_number, resolve_device

from ..backbone_file import (ARCHITECTURES, architecture_of, describe_contents, read_backbone_file, saved_start,
                             start_record)
from ..base import ObjectDetector, check_images
from ..registry import register_detector, save_state
from ..types import AGNOSTIC_CLASS, Prediction
from .network import network_from_yaml, nms, transfer_weights
from .offline import import_ultralytics, quiet_offline
from .run_folder import (RUN_DATA, RUN_TRAINER, check_same_run, clear_run, last_checkpoint, new_state,
                         resume_state, write_state)
from .torchvision_backbone import load_torchvision_backbone, torchvision_yaml
from .training import preserved_global_state, step_plan, train_on_ultralytics
from .yoloset import prepare_run_data, source_class_names, split_sources, to_channels

FORMAT = "defectgen.detectors.yolo/1"
"""Written into every saved model; :meth:`YOLODetector.load` refuses files without it."""

DEFAULT_MODEL = "yolov8n.yaml"

DEFAULT_WARMUP_EPOCHS = 3.0
"""ultralytics' own warm-up, in epochs (what long runs keep; see :meth:`YOLODetector.run_settings`)."""
WARMUP_SHARE = 0.1
"""The largest share of a run's steps that the default warm-up takes."""

# ultralytics training arguments the detector sets itself; the five hyperparameters have constructor arguments
_MANAGED = {"data", "model", "epochs", "imgsz", "batch", "device", "workers", "seed", "deterministic", "project",
            "name", "exist_ok", "plots", "amp", "resume", "pretrained", "val", "rect", "single_cls", "fraction",
            "time", "task", "mode", "classes", "cfg"}
_HYPER = {"optimizer": "optimizer", "lr0": "learning_rate", "momentum": "momentum", "weight_decay": "weight_decay",
          "warmup_epochs": "warmup_epochs"}
_PREDICT_CHUNK = 32


@register_detector("yolo")
class YOLODetector(ObjectDetector):
    """An ultralytics YOLO detector (what it decides and why: ``docs/yolo.md``).

    Args:
        class_names: the defect classes (id ``k + 1`` is ``class_names[k]``). Without it (and without
            ``num_classes``) the detector takes the training data's classes at its first ``fit``.
        num_classes: the number of classes when the names should come from the data (must then match it).
        image_size: side of the square images it takes (a multiple of the network's stride, 32).
        channels: 1 (gray) or 3 (RGB); gray images are repeated to the network's three channels, colour
            images given to a gray model are turned into luminance first.
        model: an ultralytics model yaml: a name such as ``"yolov8n.yaml"``, ``"yolo11n.yaml"``, ``"yolo26n.yaml"``
            (the letter picks the scale) or a local ``.yaml`` file. The network starts from random weights.
        backbone: a torchvision backbone (``"resnet18"``, ``"resnet50"``, ``"mobilenet_v3_large"``,
            ``"mobilenet_v3_small"``) in place of the yaml's own, under its head (:mod:`.torchvision_backbone`);
            default: the yaml's backbone, or the architecture of ``weights_backbone``.
        weights_backbone: optional local backbone file (:mod:`detectors.backbone_file`, e.g. the ``backbone.pt``
            of ``defectgen pretrain``) loaded into that torchvision backbone; never downloaded. :meth:`describe`
            records it (path and content hash) under ``"start"``.
        weights: optional local file to start from: an ultralytics ``.pt`` checkpoint (a pickle: only files you
            trust), a state dict, or a defectgen YOLO model; layers whose names and shapes match are copied.
            Never downloaded.
        batch_size: images per training batch (and per optimiser step, see ``docs/yolo.md``).
        optimizer: ultralytics' optimiser name: ``"SGD"``, ``"AdamW"``, ``"Adam"``, ``"RMSprop"``... or
            ``"auto"`` (its rule: AdamW with a learning rate from the class count for short runs, ignoring
            ``learning_rate``; MuSGD for long ones).
        learning_rate, momentum, weight_decay: ultralytics' ``lr0``, ``momentum``, ``weight_decay`` (its
            defaults).
        warmup_epochs: ultralytics' warm-up (the learning rate rises from 0 over these epochs). ``None`` (the
            default): ultralytics' 3 epochs, but at most :data:`WARMUP_SHARE` of the run's steps, so a short run
            is not all warm-up (see :meth:`run_settings`); a number is taken as given.
        train_args: any other ultralytics training argument (JSON-able), e.g. ``{"mosaic": 0.0, "cos_lr": True,
            "nbs": 64}``; the ones the detector manages (data, devices, folders, seed...) are refused.
        conf_threshold, iou_threshold, max_det: the NMS settings of :meth:`predict` (a low confidence threshold
            keeps the low-score boxes mAP needs).
        seed: seeds the initialisation, ultralytics' training and the synthetic defects.
        device: where the network lives and trains (``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"``).

    Raises:
        ImportError: ultralytics is not installed.
        ValueError: a bad setting, a model yaml that does not exist, a missing weights file.
    """

    FORMAT = FORMAT
    BACKBONE_ARGUMENT = "weights_backbone"  # the constructor argument a study's backbone_weights key sets
    HELP = "YOLO (ultralytics, AGPL-3.0, the optional 'yolo' extra) on synthetic and/or real defect boxes"
    MODEL_NAME = "YOLO"

    @classmethod
    def add_model_arguments(cls, parser) -> None:
        parser.add_argument("--model", metavar="YAML", default=DEFAULT_MODEL,
                            help="ultralytics model yaml, random init (default: %(default)s)")
        parser.add_argument("--backbone", choices=ARCHITECTURES,
                            help="a torchvision backbone under the yaml's head (ultralytics' TorchVision block), "
                                 "random init unless --weights-backbone (default: the yaml's own backbone; with "
                                 "--weights-backbone: the file's architecture)")
        parser.add_argument("--weights-backbone", metavar="FILE", type=Path,
                            help="local backbone file (a torchvision resnet18 / resnet50 / mobilenet_v3_large / "
                                 "mobilenet_v3_small state_dict, head optional: the backbone.pt of 'defectgen "
                                 "pretrain') loaded into that torchvision backbone; never downloaded")
        parser.add_argument("--workers", metavar="N", type=int, default=0,
                            help="data loader processes (default: %(default)s: same seed, same model)")

    @classmethod
    def model_settings(cls, args) -> Dict[str, Any]:
        return {"model": args.model, "backbone": args.backbone,
                "weights_backbone": None if args.weights_backbone is None else str(args.weights_backbone)}

    @classmethod
    def cli_fit_options(cls, args) -> Dict[str, Any]:
        # the run folder holds ultralytics' run (last.pt, for --resume) and the fit's settings
        return {"out": args.out, "resume": args.resume, "workers": args.workers}

    @classmethod
    def study_fit_options(cls, folder: Path) -> Dict[str, Any]:
        return {"out": folder / "run"}  # ultralytics' run folder inside the cell's

    def __init__(self, class_names: Optional[Sequence[str]] = None, num_classes: Optional[int] = None,
                 image_size: int = 320, channels: int = 3, model: str = DEFAULT_MODEL,
                 backbone: Optional[str] = None, weights_backbone: Optional[Union[str, Path]] = None,
                 weights: Optional[Union[str, Path]] = None, batch_size: int = 16, optimizer: str = "auto",
                 learning_rate: float = 0.01, momentum: float = 0.937, weight_decay: float = 0.0005,
                 warmup_epochs: Optional[float] = None, train_args: Optional[Mapping[str, Any]] = None,
                 conf_threshold: float = 0.001, iou_threshold: float = 0.7, max_det: int = 100, seed: int = 0,
                 device: Union[str, torch.device] = "cpu"):
        import_ultralytics()
        if class_names is not None:
            if isinstance(class_names, str) or not len(class_names):
                raise ValueError(f"class_names must be a non-empty list of names, got {class_names!r}")
            names = [str(n) for n in class_names]
            if len(set(names)) != len(names):
                raise ValueError(f"class_names must be unique, got {names}")
            if num_classes is not None and check_int(num_classes, "num_classes", 1) != len(names):
                raise ValueError(f"num_classes={num_classes} but class_names has {len(names)} names")
        elif num_classes is not None:
            k = check_int(num_classes, "num_classes", 1)
            names = [AGNOSTIC_CLASS] if k == 1 else [f"class_{i + 1}" for i in range(k)]
        else:
            names = [AGNOSTIC_CLASS]
        self.class_names: List[str] = names
        # where the names come from: "given", "count" (num_classes: names from the data) or "data" (anything)
        self._names_source = "given" if class_names is not None else "count" if num_classes is not None else "data"
        self.image_size = check_int(image_size, "image_size", 32)
        self.channels = check_channels(channels)
        if not isinstance(model, (str, Path)) or not str(model).lower().endswith((".yaml", ".yml")):
            raise ValueError(f"model must be an ultralytics model yaml (e.g. 'yolov8n.yaml', 'yolo11n.yaml' or a local "
                             f".yaml file), got {model!r}; start from trained weights with weights=")
        if "://" in str(model):
            raise ValueError(f"model must be a yaml name or a local file, not a URL: {model!r}")
        self.model = str(model)
        self.backbone, self.weights_backbone = _check_backbone(backbone, weights_backbone)
        self.weights = None if weights is None else str(weights)
        self.batch_size = check_int(batch_size, "batch_size", 2)
        if not isinstance(optimizer, str):
            raise TypeError(f"optimizer must be a name such as 'auto', 'SGD' or 'AdamW', got {optimizer!r}")
        self.optimizer = optimizer
        self.learning_rate = check_number(learning_rate, "learning_rate", 0.0)
        self.momentum = check_number(momentum, "momentum", 0.0, 1.0)
        self.weight_decay = check_number(weight_decay, "weight_decay", 0.0)
        self.warmup_epochs = None if warmup_epochs is None else check_number(warmup_epochs, "warmup_epochs", 0.0)
        self.train_args = _check_train_args(train_args)
        self.conf_threshold = check_number(conf_threshold, "conf_threshold", 0.0, 1.0)
        self.iou_threshold = check_number(iou_threshold, "iou_threshold", 0.0, 1.0)
        self.max_det = check_int(max_det, "max_det", 1)
        self.seed = check_int(seed, "seed", 0)
        self.history: List[Dict[str, Any]] = []
        self.epochs_trained = 0
        self.steps_trained = 0  # optimiser steps = training batches, over every fit
        self.images_seen = 0  # training images (with repeats) over every fit
        self._build_network(resolve_device(device))

    # -- set-up -------------------------------------------------------------------------------------------------
    def _build_network(self, device: torch.device) -> None:
        """A randomly initialised network (seeded) for the current classes, plus ``weights`` if given."""
        from ultralytics.nn.tasks import yaml_model_load

        with quiet_offline():
            try:
                cfg = yaml_model_load(self.model)
            except FileNotFoundError:
                raise ValueError(f"model yaml {self.model!r} not found: name one ultralytics ships (e.g. "
                                 "'yolov8n.yaml', 'yolo11n.yaml') or a local .yaml file") from None
            if self.backbone is not None:
                cfg = torchvision_yaml(cfg, self.backbone, self.model)
        self.network, self.model_yaml = network_from_yaml(cfg, len(self.class_names), self.seed)
        stride = int(self.network.stride.max())
        if self.image_size % stride:
            raise ValueError(f"image_size must be a multiple of the network's stride {stride}, got {self.image_size}")
        if self.weights_backbone is not None:
            load_torchvision_backbone(self.network, read_backbone_file(self.weights_backbone, "weights_backbone file"),
                                      self.backbone)
        # where the backbone's starting weights came from (a report says SSL-initialised or random)
        self.start: Dict[str, Any] = start_record(self.weights_backbone, self.backbone)
        if self.weights is not None:
            transfer_weights(self.network, self.weights, FORMAT)
        self.network.to(device).eval()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def config(self) -> Dict[str, Any]:
        """The constructor arguments (JSON-able); a saved model records them."""
        return {"class_names": list(self.class_names), "num_classes": self.num_classes,
                "image_size": self.image_size, "channels": self.channels, "model": self.model,
                "backbone": self.backbone, "weights_backbone": self.weights_backbone, "weights": self.weights,
                "batch_size": self.batch_size, "optimizer": self.optimizer,
                "learning_rate": self.learning_rate, "momentum": self.momentum, "weight_decay": self.weight_decay,
                "warmup_epochs": self.warmup_epochs, "train_args": dict(self.train_args),
                "conf_threshold": self.conf_threshold, "iou_threshold": self.iou_threshold, "max_det": self.max_det,
                "seed": self.seed, "device": str(self.device)}

    def describe(self) -> Dict[str, Any]:
        """The "model" entry of an evaluation report."""
        return {"detector": "yolo", "model": self.model, "config": self.config(), "start": dict(self.start),
                "epochs_trained": self.epochs_trained, "steps_trained": self.steps_trained,
                "images_seen": self.images_seen, "class_names": list(self.class_names)}

    def __repr__(self) -> str:
        return (f"YOLODetector(model={self.model!r}, classes={self.class_names}, image_size={self.image_size}, "
                f"channels={self.channels}; trained {self.epochs_trained} epochs, {self.images_seen} images seen)")

    def _adopt_class_names(self, names: Sequence[str]) -> None:
        """Take the data's classes when the detector was not given names (see ``class_names``)."""
        if self._names_source == "given" or list(names) == self.class_names:
            return
        if self._names_source == "count":
            if len(names) != self.num_classes:
                raise ValueError(f"the training data has {len(names)} classes {list(names)} but the detector was made "
                                 f"for num_classes={self.num_classes}; pass class_names= to map them")
            self.class_names = list(names)
            return
        if self.epochs_trained or self.weights is not None:
            if len(names) != self.num_classes:
                raise ValueError(f"the training data has classes {list(names)} but this detector was trained for "
                                 f"{self.class_names}; create it with class_names= naming them all")
            self.class_names = list(names)
            return
        # untrained, names from the data: rebuild the (seeded, random) network for the data's class count
        self.class_names = list(names)
        self._build_network(self.device)

    # -- training -------------------------------------------------------------------------------------------------
    def fit(self, data: Any, epochs: Optional[int] = None, images_seen: Optional[int] = None,
            out: Optional[Union[str, Path]] = None, resume: bool = False,
            progress: Optional[bool] = None, callback: Optional[Callable[[Dict[str, Any]], None]] = None,
            workers: int = 0, val: Any = None, verbose: bool = False,
            device: Union[str, torch.device, None] = None) -> "YOLODetector":
        """Train with ultralytics for ``epochs`` passes over the data or for ``images_seen`` images (one of
        them; neither: 10 epochs), continuing from the current weights.

        A length in images seen is ``ceil(images_seen / batch_size)`` steps
        (:func:`~detectors.data.sources.steps_for`) whatever the data's size, so runs on different data are
        compared at equal cost. ultralytics counts in epochs of a fixed number of batches, so the steps are cut
        into ``E`` epochs of ``L`` batches of about one pass over the data each
        (:func:`~detectors.yolo.dataset.choose_epochs`): ``E * L`` is the smallest count ``>= steps`` such epochs
        allow, equal to it whenever ``steps`` splits into such epochs, otherwise fewer than ``E`` steps more.
        ``images_seen`` then grows by ``E * L * batch_size``, the images actually trained on. Each batch is then
        drawn by the detector's own sampler: a seeded stream over the training images (each once per pass),
        or, for a :class:`~detectors.data.sources.MixedSource` mixed step by step (a ``real_fraction``, or the
        ``"finetune"`` schedule), the source's :meth:`~detectors.data.sources.MixedSource.plan` of every step,
        so each batch holds the planned real share (with ``epochs``, too: ``E = epochs``, ``L`` the source's
        ``steps_per_epoch``).

        The default warm-up is scaled to the run's steps, not counted in epochs (:meth:`run_settings`), so a short
        run is not all warm-up. What a short run needs most is steps: YOLO learns per optimiser step, so at a
        fixed ``images_seen`` a smaller ``batch_size`` trains more for about the same CPU time (DeepPCB, 300 real
        images at 256 px, 1200 images seen, yolov8n from scratch: mAP@50 0.0 with batches of 16, 75 steps, in
        every setting tried; 33.7 and 41.8 on seeds 0 and 1 with batches of 8, 150 steps, at the defaults).

        Args:
            data: a :class:`~detectors.types.LabelledSet` (resized to ``image_size``), or a training source from
                :mod:`detectors.data.sources`: labelled, synthetic (a fresh defect on every OK image every epoch,
                or every draw when the run is counted in steps) or mixed.
            epochs: epochs of this fit (the learning-rate schedule spans them); every image once per epoch.
            images_seen: training images of this fit instead (counted with repeats).
            out: the run folder (``data/``, ``ultralytics/weights/last.pt``, ``yolo-run.json``); default: a
                temporary folder removed afterwards (no resume then).
            resume: continue the interrupted fit in ``out`` (same data, settings and ``epochs`` /
                ``images_seen``).
            progress: show a progress bar with the losses and ETA on stderr (default: when it is a terminal).
            callback: called after every epoch with its record: ``"epoch"``, ``"steps"`` and ``"images_seen"``
                (counting every fit of this detector), ``"loss"`` (the sum of the model's loss terms, each also
                given: ``"box_loss"``, ``"cls_loss"``, ``"dfl_loss"`` for YOLOv8 / 11; YOLO26 has ``"l1_loss"``),
                ``"seconds"``, ``"lr"`` and ``"precision"``, ``"recall"``, ``"mAP50"``, ``"mAP50-95"`` on the
                validation images (after every epoch, or only the last with ``val=False``). The detector keeps
                them in ``history``. A callback that raises stops the fit, which ``resume`` continues from the
                last finished epoch.
            workers: dataloader worker processes (ultralytics uses none on CPU).
            val: validation images: ``None`` (up to 8 of the training images, a monitor of the fit), a
                :class:`~detectors.types.LabelledSet`, or ``False`` (validate only after the last epoch).
            verbose: let ultralytics print its own log and progress bars.
            device: where to train (``"auto"``, ``"cuda"``, ``"cpu"``...); default: where the network is. The
                network stays there afterwards.
        """
        from ..data.sources import training_length

        epochs, images_seen = training_length(epochs, images_seen, default_epochs=10)
        workers = check_int(workers, "workers", 0)
        if resume and out is None:
            raise ValueError("resume needs out=, the run folder of the interrupted fit")
        if device is not None:
            self.to(device)
        sets, synthetic = split_sources(data)
        if workers and any(torch.device(getattr(s, "device", "cpu")).type != "cpu" for s in synthetic):
            raise ValueError("a synthetic source on a GPU paints its defects in the training process: use workers=0 "
                             "(or build the source on the CPU)")
        found = source_class_names(sets, synthetic)
        declared = [str(n) for n in getattr(data, "class_names", ())]  # a source's own order, when it has one
        self._adopt_class_names(declared + [n for n in found if n not in declared])
        temporary = out is None
        run = Path(tempfile.mkdtemp(prefix="defectgen-yolo-run-") if temporary else out).resolve()
        try:
            if resume:
                state = resume_state(run, self.config(), epochs, images_seen)
            else:
                clear_run(run)
            with preserved_global_state(), quiet_offline(verbose):
                run_data = prepare_run_data(sets, synthetic, self.class_names, self.image_size, self.channels,
                                            self.seed, run / RUN_DATA, val=val)
                plan = step_plan(data, run_data, epochs, images_seen, self.batch_size, self.seed)
                length = {"epochs": plan.epochs if plan is not None else epochs, "images_seen": images_seen,
                          "steps": plan.total_steps if plan is not None else None,
                          "batches_per_epoch": plan.per_epoch if plan is not None else None}
                if resume:
                    check_same_run(run, state, run_data.fingerprint, length)
                else:
                    before = {"epochs_trained": self.epochs_trained, "history": list(self.history),
                              "steps_trained": self.steps_trained, "images_seen": self.images_seen}
                    state = new_state(self.config(), epochs, images_seen, length, before, run_data.fingerprint)
                    write_state(run, state)
                self._train(run, run_data, state, length["epochs"], plan, resume, progress, callback, workers, val,
                            verbose)
        finally:
            if temporary:
                shutil.rmtree(run, ignore_errors=True)
        return self

    def run_settings(self, total_steps: int, per_epoch: int) -> Dict[str, Any]:
        """The ultralytics settings the detector derives from the run's length (``total_steps`` optimiser steps
        in epochs of ``per_epoch`` batches), beside the fixed ones.

        The warm-up: ultralytics warms up over ``warmup_epochs`` epochs (default 3, at most all epochs but the
        last). A 4-epoch run of 75 steps was then three quarters warm-up, its learning rate peaking at half its
        value just before the linear decay took it down again, and YOLO learnt nothing (mAP@50 0 on DeepPCB).
        With ``warmup_epochs=None`` the warm-up is ultralytics' 3 epochs or :data:`WARMUP_SHARE` of the run,
        whichever is shorter: long runs keep ultralytics' behaviour, short ones spend 10 % of their steps
        warming up (on that data with batches of 8, 150 steps: mAP@50 33.7 / 41.8 on seeds 0 / 1, against
        48.8 / 40.3 without any warm-up, within the spread between seeds; a little warm-up is kept for the
        optimisers that need it, e.g. SGD's bias learning rate starting at 0.1). An explicit ``warmup_epochs``
        is left alone.
        """
        if self.warmup_epochs is not None:
            return {}
        return {"warmup_epochs": min(DEFAULT_WARMUP_EPOCHS, WARMUP_SHARE * total_steps / per_epoch)}

    def _overrides(self, run: Path, run_data, epochs: int, workers: int, val: Any, verbose: bool) -> Dict[str, Any]:
        device = self.device
        args = {"model": self.model, "data": str(run_data.yaml_path), "epochs": epochs, "imgsz": self.image_size,
                "batch": self.batch_size, "workers": workers, "seed": self.seed, "deterministic": True,
                "device": "cpu" if device.type == "cpu" else str(device.index if device.index is not None
                                                                   else torch.cuda.current_device()),
                "project": str(run), "name": RUN_TRAINER, "exist_ok": True, "plots": False, "amp": False,
                "verbose": verbose, "val": val is not False, "pretrained": False, "rect": False, "single_cls": False,
                "fraction": 1.0, "time": None, "task": "detect", "mode": "train", "optimizer": self.optimizer,
                "lr0": self.learning_rate, "momentum": self.momentum, "weight_decay": self.weight_decay,
                "warmup_epochs": DEFAULT_WARMUP_EPOCHS if self.warmup_epochs is None else self.warmup_epochs,
                "nbs": self.batch_size, "patience": 0, "save": True,
                "save_period": -1}
        args.update(self.train_args)
        return args

    def _train(self, run: Path, run_data, state: Dict[str, Any], epochs: int, plan, resume: bool,
               progress: Optional[bool], callback, workers: int, val: Any, verbose: bool) -> None:
        per_epoch = plan.per_epoch if plan is not None else math.ceil(
            (run_data.counts["labelled"] + run_data.counts["ok"]) / self.batch_size)
        overrides = self._overrides(run, run_data, epochs, workers, val, verbose)
        overrides.update(self.run_settings(epochs * per_epoch, per_epoch))
        if resume:
            overrides["resume"] = str(last_checkpoint(run))
        trained = train_on_ultralytics(overrides, run_data, plan, None if resume else self.network, run, state,
                                       epochs, per_epoch, self.batch_size, progress, callback)
        self.network.load_state_dict(trained.weights)
        self.network.eval()
        before = state["before"]
        self.history = list(before["history"]) + trained.records
        self.epochs_trained = int(before["epochs_trained"]) + epochs
        self.steps_trained = int(before.get("steps_trained", 0)) + trained.steps
        self.images_seen = int(before.get("images_seen", 0)) + trained.images
        state["finished"] = True
        write_state(run, state)

    # -- prediction ---------------------------------------------------------------------------------------------
    def _network_input(self, images: torch.Tensor) -> torch.Tensor:
        x = to_channels(images.to(self.device), self.channels)
        x = x.float().div(255) if x.dtype == torch.uint8 else x.float()
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> Prediction:
        """Boxes for a ``(B, C, image_size, image_size)`` batch (uint8, or float in [0, 1]), on its device.

        ``boxes`` are ``x1 y1 x2 y2`` in the input's pixels, ``box_labels`` ids ``1..K`` (ultralytics' class
        + 1), ``scores`` each image's highest box score (0 where there is none). NMS keeps up to ``max_det``
        boxes above ``conf_threshold`` with IoU below ``iou_threshold`` between boxes of one class.
        """
        check_images(images, self.image_size)
        if len(images) == 0:  # the network cannot run on an empty batch
            empty = torch.zeros(0, device=images.device)
            return Prediction(scores=empty, boxes=[], box_scores=[], box_labels=[])
        nms_fn, options = nms()
        options.update({"conf_thres": self.conf_threshold, "iou_thres": self.iou_threshold, "max_det": self.max_det})
        if "nc" in options:
            options["nc"] = self.num_classes
        if "end2end" in options:
            options["end2end"] = bool(getattr(self.network.model[-1], "end2end", False))
        self.network.eval()
        detections: List[torch.Tensor] = []
        for chunk in images.split(_PREDICT_CHUNK):
            detections += list(nms_fn(self.network(self._network_input(chunk)), **options))
        out = images.device
        boxes = [d[:, :4].float().clamp(0, self.image_size).to(out) for d in detections]
        box_scores = [d[:, 4].float().to(out) for d in detections]
        box_labels = [d[:, 5].long().add(1).to(out) for d in detections]
        return Prediction.from_boxes(boxes, box_scores, box_labels, device=out)

    # -- persistence ----------------------------------------------------------------------------------------------
    def save(self, path: Union[str, Path]) -> Path:
        """Write the model (network weights, its yaml, settings, classes, history) to ``path`` atomically."""
        state = {"format": FORMAT, "config": self.config(), "class_names": list(self.class_names),
                 "model_yaml": self.model_yaml, "start": self.start, "history": self.history,
                 "epochs_trained": self.epochs_trained, "steps_trained": self.steps_trained,
                 "images_seen": self.images_seen,
                 "state_dict": {k: v.detach().cpu() for k, v in self.network.state_dict().items()}}
        return save_state(state, path)

    @classmethod
    def from_state(cls, state: Dict[str, Any], path: Union[str, Path] = "<state>", image_size: Optional[int] = None,
                   device: Union[str, torch.device] = "cpu") -> "YOLODetector":
        """A detector from a loaded save (what :func:`detectors.registry.load_detector` calls); needs ultralytics
        (an ``ImportError`` without it)."""
        import_ultralytics()
        return super().from_state(state, path, image_size, device)

    def _restore(self, state: Dict[str, Any], config: Dict[str, Any]) -> None:
        for key in ("image_size", "channels", "model", "weights", "batch_size", "optimizer", "learning_rate",
                    "momentum", "weight_decay", "warmup_epochs", "train_args", "conf_threshold", "iou_threshold",
                    "max_det", "seed"):
            setattr(self, key, config[key])
        self.train_args = dict(self.train_args)
        self.backbone, self.weights_backbone = config.get("backbone"), config.get("weights_backbone")
        self.start = saved_start(state, self.weights_backbone, self.backbone)
        self.class_names = list(state["class_names"])
        self._names_source = "given"
        self.epochs_trained = int(state["epochs_trained"])
        self.steps_trained = int(state.get("steps_trained", 0))  # files saved before these were counted: 0
        self.images_seen = int(state.get("images_seen", 0))
        self.network, self.model_yaml = network_from_yaml(state["model_yaml"], len(self.class_names), self.seed)
        self.network.load_state_dict(state["state_dict"])
        self.network.eval()


# -- helpers ---------------------------------------------------------------------------------------------------------
def _check_backbone(backbone: Optional[str], weights_backbone: Optional[Union[str, Path]]):
    """``(backbone, weights_backbone)`` checked: a backbone file's architecture is the backbone's (or names it)."""
    if backbone is not None and backbone not in ARCHITECTURES:
        raise ValueError(f"backbone must be one of {', '.join(ARCHITECTURES)} (a torchvision backbone), or None for "
                         f"the model yaml's own; got {backbone!r}")
    if weights_backbone is None:
        return backbone, None
    state = read_backbone_file(weights_backbone, "weights_backbone file")
    held = architecture_of(state)
    if held is None or (backbone is not None and held != backbone):
        raise ValueError(f"weights_backbone {str(weights_backbone)!r} holds {describe_contents(state)}; the yolo "
                         f"detector takes a torchvision {backbone or ' / '.join(ARCHITECTURES)} backbone file")
    return held, str(weights_backbone)


def _check_train_args(train_args: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    if train_args is None:
        return {}
    if not isinstance(train_args, Mapping):
        raise TypeError(f"train_args must be a dict of ultralytics training arguments, got {train_args!r}")
    args = dict(train_args)
    for key in args:
        if key in _HYPER:
            raise ValueError(f"train_args: set {key!r} with the detector's {_HYPER[key]}= argument")
        if key in _MANAGED:
            raise ValueError(f"train_args: {key!r} is set by the detector itself (managed: {sorted(_MANAGED)})")
    from ultralytics.cfg import DEFAULT_CFG_DICT

    unknown = sorted(set(args) - set(DEFAULT_CFG_DICT))
    if unknown:
        raise ValueError(f"train_args: unknown ultralytics arguments {unknown}")
    try:
        json.dumps(args)
    except TypeError as error:
        raise TypeError(f"train_args must be JSON-able ({error})") from None
    return args



__all__ = ["YOLODetector", "FORMAT", "DEFAULT_MODEL"]
