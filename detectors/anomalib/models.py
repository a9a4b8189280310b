"""Which anomalib image model a name means, what it may be given, and building it offline.

A model is named as anomalib's class (``"Padim"``, ``"Patchcore"``, ``"Draem"``, ...) and built with its own
init arguments, except the four components defectgen owns: its pre-processor is anomalib's own for the model
at the detector's image size (each model keeps its normalisation), and post-processing, evaluation and
visualisation are off, because the raw scores and maps go to defectgen's one evaluator.

The tables below are what was checked against anomalib 2.7 (see docs/anomalib_methods.md): the models whose
training needs a download defectgen cannot replace by a local backbone file, the ones that give no anomaly map,
and where a model keeps its synthetic-anomaly generator.
"""
from __future__ import annotations

import inspect
import tempfile
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

from .backbone import RANDOM, load_backbone_into
from .offline import offline_build

NEEDS_DOWNLOAD = {
    "EfficientAd": "its pretrained teacher network (anomalib's efficientad_pretrained_weights archive) and the "
                   "ImageNette images of init_args imagenet_dir",
    "Dsr": "its pretrained VQ model (anomalib's vq_model_pretrained_128_4096.pckl)",
    "Csflow": "torchvision's EfficientNet-B5 ImageNet weights",
    "Uflow": "timm's CaiT ImageNet weights (a transformer, not a torchvision-layout backbone)",
    "Cfa": "torchvision's ImageNet weights for its backbone (asked with no pre_trained switch)",
    "UniNet": "torchvision's wide_resnet50_2 ImageNet weights (asked with no pre_trained switch)",
    "AnomalyVFM": "its foundation-model weights from the Hugging Face Hub",
    "CFM": "Point-MAE weights fetched from GitHub (an RGB + point-cloud model)",
    "WinClip": "CLIP weights (open_clip)",
    "VlmAd": "a vision-language model (a local server or an API)",
}
"""Models that cannot train without weights a ``backbone_weights`` file cannot give (refused by name)."""

NO_MAPS = ("Ganomaly", "Dfkde")
"""Models whose inference gives an image score only: no pixel metrics."""

GENERATOR_ATTRIBUTE = {"Draem": ("augmenter",), "Glass": ("model", "augmentor")}
"""Where a model keeps the synthetic-anomaly generator a ``generator`` replaces (attribute path)."""

TEXTURE_FOLDER = {"Draem": "dtd_dir"}
"""Models whose own generator needs a texture folder that anomalib downloads (DTD) when it is missing (GLASS's
``anomaly_source_path`` is optional: left out, nothing is downloaded)."""

OWNED = ("pre_processor", "post_processor", "evaluator", "visualizer", "pre_trained", "backbone")
"""Init arguments defectgen sets itself (``backbone`` has its own key)."""


def model_class(name: Any) -> type:
    """The anomalib image model class called ``name``; a ``ValueError`` naming ``model`` and the known names."""
    models = _anomalib_models()
    known = image_model_names()
    if not isinstance(name, str) or name not in known:
        import difflib

        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"model: unknown anomalib image model {name!r}; {hint}known: {', '.join(known)}")
    if name in NEEDS_DOWNLOAD:
        raise ValueError(f"model {name!r} needs {NEEDS_DOWNLOAD[name]}, which defectgen never downloads and "
                         "backbone_weights (a torchvision-layout backbone file) cannot give; pick another model")
    return getattr(models, name)


def image_model_names() -> list:
    """anomalib's image model class names (its video models take clips, not images)."""
    models = _anomalib_models()

    return sorted(name for name in models.__all__
                  if isinstance(getattr(models, name, None), type) and ".models.image." in getattr(models, name)
                  .__module__)


def _anomalib_models():
    """``anomalib.models``, imported without its deprecation warnings (timm's and its own: not the user's)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import anomalib.models

    return anomalib.models


def makes_maps(name: str) -> bool:
    """Whether the model gives pixel anomaly maps (known without building it)."""
    return name not in NO_MAPS


def takes_generator(name: str) -> bool:
    return name in GENERATOR_ATTRIBUTE


def check_init_args(cls: type, init_args: Any) -> Dict[str, Any]:
    """``init_args`` as a dict of the model's own constructor arguments; ``ValueError`` naming the bad key."""
    if init_args is None:
        return {}
    if not isinstance(init_args, Mapping):
        raise ValueError(f"init_args must be a mapping of {cls.__name__}'s constructor arguments, got {init_args!r}")
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "args", "kwargs")]
    for key in init_args:
        if key in OWNED:
            what = ("set by defectgen (raw scores and maps go to its evaluator; nothing is downloaded)"
                    if key != "backbone" else "given by the backbone key")
            raise ValueError(f"init_args.{key}: {what}")
        if key not in accepted:
            raise ValueError(f"init_args.{key}: not an argument of anomalib's {cls.__name__} "
                             f"(it takes: {', '.join(a for a in accepted if a not in OWNED)})")
    return dict(init_args)


def build_model(name: str, init_args: Dict[str, Any], image_size: int, backbone: Optional[str],
                backbone_weights: Optional[str], generator: Any, restoring: bool = False) -> Tuple[Any, int]:
    """The anomalib module, built offline; returns ``(module, networks that asked for pretrained weights)``.

    ``backbone_weights`` (a file) fills those networks; :data:`RANDOM` leaves them random; ``None`` is refused
    when a network asked for weights (unless ``restoring``: a saved model's weights are loaded next).
    """
    cls = model_class(name)
    kwargs = check_init_args(cls, init_args)
    parameters = inspect.signature(cls.__init__).parameters
    if backbone is not None:
        if "backbone" not in parameters:
            raise ValueError(f"backbone: anomalib's {name} takes no backbone argument")
        kwargs["backbone"] = backbone
    # pre_trained keeps the model's default: a network that asks timm for ImageNet weights is built random
    # (offline_build) and recorded, so the backbone file fills exactly the networks that wanted weights
    with tempfile.TemporaryDirectory(prefix="defectgen-anomalib-") as empty:
        if name in TEXTURE_FOLDER:
            folder = TEXTURE_FOLDER[name]
            if folder in kwargs:
                if not Path(kwargs[folder]).is_dir():
                    raise ValueError(f"init_args.{folder}: {str(kwargs[folder])!r} is not a folder (anomalib would "
                                     "download DTD there; defectgen never downloads)")
            elif generator is not None or restoring:
                kwargs[folder] = empty  # the texture generator is replaced, or unused at prediction
            else:
                raise ValueError(f"generator: {name} learns from synthetic anomalies; give generator (any defectgen "
                                 f"operator, e.g. draem) or init_args.{folder} (a local texture folder for anomalib's "
                                 "own generator; defectgen never downloads DTD)")
        with offline_build(name, [cls.__module__]) as wanted:
            module = cls(pre_processor=cls.configure_pre_processor((image_size, image_size)), post_processor=False,
                         evaluator=False, visualizer=False, **kwargs)
    if not wanted and backbone_weights not in (None, RANDOM) and not restoring:
        raise ValueError(f"backbone_weights: anomalib's {name} asks for no pretrained backbone, so nothing would "
                         "use the file; leave backbone_weights out")
    if wanted and not restoring:
        if backbone_weights is None:
            raise ValueError(f"backbone_weights: {name} starts from pretrained backbone weights, which are never "
                             "downloaded; give a local torchvision-layout file (ImageNet weights you saved, or the "
                             f"backbone.pt of 'defectgen pretrain'), or backbone_weights: {RANDOM} to accept "
                             "random features")
        if backbone_weights != RANDOM:
            load_backbone_into(wanted, backbone_weights, name)
    if generator is not None:
        set_generator(module, name, generator)
    return module, len(wanted)


def set_generator(module: Any, name: str, generator: Any) -> None:
    """Make ``generator`` (a defectgen operator, name, config or recipe file) the model's anomaly generator."""
    if not takes_generator(name):
        raise ValueError(f"generator: anomalib's {name} makes no synthetic anomalies (models that do: "
                         f"{', '.join(GENERATOR_ATTRIBUTE)})")
    from defectgen.compat.anomalib import AnomalibGenerator

    *path, last = GENERATOR_ATTRIBUTE[name]
    owner = module
    for attribute in path:
        owner = getattr(owner, attribute)
    setattr(owner, last, AnomalibGenerator(generator))


__all__ = ["model_class", "image_model_names", "makes_maps", "takes_generator", "check_init_args", "build_model",
           "set_generator", "NEEDS_DOWNLOAD", "NO_MAPS", "GENERATOR_ATTRIBUTE"]
