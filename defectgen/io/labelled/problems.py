"""What the readers do with labels that are wrong but recoverable: fix or drop them, and say so.

Real label files have lines that do not parse, boxes a few pixels past the image edge, boxes of zero width.
Stopping at the first would make a large set unreadable for one bad line; skipping them quietly would make a
detector's score depend on damage nobody saw. So every reader collects such problems in a :class:`Problems`
(one line each, naming the file and, where there is one, the line), warns once per problem at the end (the
first few, then a count) and records the full list in ``LabelledSet.info["problems"]``.

Errors that leave nothing sensible to return (a missing image, an unknown class) are ``ValueError`` instead.
"""
from __future__ import annotations

import warnings
from typing import List, Sequence, Tuple

import torch

WARN_AT_MOST = 5
"""Problems warned one by one; the rest are counted in one more warning (all are in ``info["problems"]``)."""

EDGE_TOLERANCE_PX = 0.01
"""How far past the image edge a box may reach and be clipped without a report: normalised coordinates
written with 6 decimals (YOLO) land up to a few thousandths of a pixel outside an image of a few thousand."""


class LabelProblemWarning(UserWarning):
    """A label a reader skipped, clipped or dropped (the message names the file and line)."""


class Problems:
    """The problems met while reading one labelled set (see the module docstring)."""

    def __init__(self, source: str):
        self.source = source
        self.messages: List[str] = []

    def add(self, message: str) -> None:
        self.messages.append(message)

    def __len__(self) -> int:
        return len(self.messages)

    def warn(self) -> List[str]:
        """Warn about the problems (the first :data:`WARN_AT_MOST`, then a count) and return them all."""
        for message in self.messages[:WARN_AT_MOST]:
            warnings.warn(message, LabelProblemWarning, stacklevel=3)
        rest = len(self.messages) - WARN_AT_MOST
        if rest > 0:
            warnings.warn(f"{self.source}: {rest} more label problems (all {len(self.messages)} are listed in the "
                          "set's info['problems'])", LabelProblemWarning, stacklevel=3)
        return list(self.messages)


def clean_boxes(boxes: torch.Tensor, labels: torch.Tensor, width: int, height: int, where: Sequence[str],
                problems: Problems) -> Tuple[torch.Tensor, torch.Tensor]:
    """Clip ``(n, 4)`` xyxy boxes to a ``width x height`` image and drop the empty ones, reporting each.

    ``where[i]`` names box ``i``'s origin (``"file:line"``) for the report. Boxes reaching less than
    :data:`EDGE_TOLERANCE_PX` outside are clipped silently; a box with no area left (zero or negative width or
    height, or lying wholly outside the image) is dropped.
    """
    boxes = boxes.reshape(-1, 4).to(torch.float32)
    if len(boxes) == 0:
        return boxes, labels.reshape(0).to(torch.int64)
    limit = torch.tensor([width, height, width, height], dtype=torch.float32)
    clipped = torch.minimum(boxes.clamp(min=0), limit)
    outside = ((clipped - boxes).abs() > EDGE_TOLERANCE_PX).any(1)
    empty = (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
    for i in torch.nonzero(outside | empty).flatten().tolist():
        box = _fmt(boxes[i])
        if empty[i] and outside[i]:
            problems.add(f"{where[i]}: box {box} lies outside the {width}x{height} image; dropped")
        elif empty[i]:
            problems.add(f"{where[i]}: box {box} has zero area; dropped")
        else:
            problems.add(f"{where[i]}: box {box} extends outside the {width}x{height} image; clipped to "
                         f"{_fmt(clipped[i])}")
    keep = ~empty
    return clipped[keep], labels.reshape(-1).to(torch.int64)[keep]


def _fmt(box: torch.Tensor) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box.tolist()) + "]"
