"""The image embedder of ``defectgen features``: a backbone's globally average-pooled last feature map.

Three sources of a backbone:

- a backbone file (``backbone.pt``): a torchvision classification model's ``state_dict()`` without its head
  (``fc.*`` for ResNets, ``classifier.*`` for MobileNets), keys as torchvision names them; the architecture is
  named with it, and a file that does not fit it is refused naming what it looks like;
- a trained CutPaste detector's model file: its encoder (the embedding its density is fitted on);
- nothing: the architecture at random initialisation, from a seed (the baseline every pretraining must beat).

Images go in as uint8 or float in [0, 1], 1 or 3 channels (gray is repeated to RGB), and are normalised with
the ImageNet statistics, as the pretraining trunk and CutPaste's network do: the fixed scaling torchvision
backbones expect.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..backbone_file import ARCHITECTURES, check_architecture, load_backbone
from ..pretrain.backbones import build_trunk


class Embedder(nn.Module):
    """``images -> (B, D)`` pooled features of a network's last feature map.

    Args:
        network: the module holding the weights.
        description: what the backbone is, for the output files and the plot's title.
        feature_map: a function of ``network`` giving the ``(B, D, h, w)`` map of ``[0, 1]`` images, which
            does the input scaling (:meth:`detectors.pretrain.backbones.Trunk.feature_map`, CutPaste's
            ``feature_map``).
    """

    def __init__(self, network: nn.Module, description: str, feature_map: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.network = network
        self._feature_map = feature_map
        self.description = description

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        return F.adaptive_avg_pool2d(self._feature_map(x), 1).flatten(1)


def _advice(held: Optional[str]) -> str:
    return f"; use --arch {held}" if held is not None else ""


_MODEL_ADVICE = ": pass it as --model to embed with its encoder"


def load_backbone_state(path: Union[str, Path], arch: str) -> Dict[str, torch.Tensor]:
    """The tensors of a backbone file for ``arch``, head entries dropped; a ``ValueError`` when they do not fit
    it (naming the architecture they do fit, when one does)."""
    return load_backbone(path, check_architecture(arch, "architecture"), advice=_advice, model_advice=_MODEL_ADVICE)


def backbone_embedder(arch: str, path: Optional[Union[str, Path]] = None, seed: int = 0) -> Embedder:
    """The embedder of torchvision ``arch`` with the weights of backbone file ``path``, or at random
    initialisation from ``seed`` when ``path`` is None."""
    check_architecture(arch, "architecture")
    with torch.random.fork_rng(devices=[]):  # the initialisation is the seed's, whatever ran before
        torch.manual_seed(seed)
        trunk = build_trunk(arch, path, advice=_advice, model_advice=_MODEL_ADVICE)
    description = f"{arch} random init (seed {seed})" if path is None else f"{arch} from {Path(path).name}"
    return Embedder(trunk, description, trunk.feature_map).eval()


def detector_embedder(detector, path: Union[str, Path]) -> Embedder:
    """The embedder of a loaded detector (read from ``path``): CutPaste's encoder, the pooled features its
    Gaussian density models. A ``ValueError`` for a detector without such an encoder."""
    network = getattr(detector, "network", None)
    if not callable(getattr(network, "feature_map", None)):
        raise ValueError(f"--model {str(path)!r} is a {detector.kind} model, which has no image encoder to embed "
                         "with (CutPaste models have one); give a --backbone file instead")
    what = detector.describe().get("pretext") or "?"
    return Embedder(network, f"{detector.kind} encoder ({what}) from {Path(path).name}", network.feature_map).eval()


@torch.no_grad()
def embed(embedder: Embedder, images: torch.Tensor, batch_size: int = 64,
          device: Union[str, torch.device] = "cpu") -> torch.Tensor:
    """``(N, D)`` float32 CPU embeddings of ``(N, C, H, W)`` images, ``batch_size`` at a time on ``device``."""
    embedder = embedder.to(device).eval()
    chunks: List[torch.Tensor] = [embedder(chunk.to(device)).float().cpu() for chunk in images.split(batch_size)]
    if not chunks:
        raise ValueError("no images to embed")
    return torch.cat(chunks)


__all__ = ["ARCHITECTURES", "Embedder", "backbone_embedder", "detector_embedder", "load_backbone_state", "embed"]
