"""Building an anomalib model without the network: timm never fetches weights, anomalib never downloads.

anomalib's models ask timm for ImageNet weights (``pretrained=True``; STFPM's teacher asks whatever its
arguments say) and some download data sets or weight archives in their constructor or first training step
(DRAEM's DTD textures, EfficientAD's teacher and ImageNette, DSR's VQ model). :func:`offline_build` is the one
place that stops all of it while a model is built and trained:

- every ``timm.create_model`` call is made with ``pretrained=False``; the modules that *asked* for pretrained
  weights are recorded, because they are the ones a backbone file must fill (:mod:`.backbone`);
- the model module's ``download_and_extract`` (the one function anomalib fetches anything with) raises a
  ``ValueError`` naming the model, so an unlisted model that wants a download fails in one line instead of
  waiting on a socket.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Iterator, List

from torch import nn


class DownloadRefused(ValueError):
    """An anomalib model tried to download something (weights or a data set) while defectgen drove it."""


@contextlib.contextmanager
def offline_build(model_name: str, module_names: List[str]) -> Iterator[List[nn.Module]]:
    """Within the block, timm builds random-init networks and anomalib's downloads raise.

    ``module_names`` are the modules whose ``download_and_extract`` is replaced (the model's own, where anomalib
    imports it by name). Yields the list that receives every timm module built with ``pretrained=True`` asked.
    """
    import timm

    wanted_weights: List[nn.Module] = []
    create_model = timm.create_model

    def create_without_download(*args, **kwargs):
        asked = bool(kwargs.get("pretrained", False))
        kwargs["pretrained"] = False
        module = create_model(*args, **kwargs)
        if asked:
            wanted_weights.append(module)
        return module

    def refuse_download(root, info, *args, **kwargs):
        what = getattr(info, "name", None) or getattr(info, "url", "a file")
        raise DownloadRefused(f"anomalib model {model_name!r} wants to download {what} into {str(root)!r}; "
                              "defectgen never downloads: put the files there first, or pick a model that trains "
                              "offline (see docs/anomalib_methods.md)")

    with contextlib.ExitStack() as stack:
        stack.enter_context(_patched(timm, "create_model", create_without_download))
        for name in module_names:
            module = sys.modules.get(name)
            if module is not None and hasattr(module, "download_and_extract"):
                stack.enter_context(_patched(module, "download_and_extract", refuse_download))
        yield wanted_weights


@contextlib.contextmanager
def _patched(owner, attribute: str, value) -> Iterator[None]:
    original = getattr(owner, attribute)
    setattr(owner, attribute, value)
    try:
        yield
    finally:
        setattr(owner, attribute, original)


__all__ = ["offline_build", "DownloadRefused"]
