"""The YOLO detector's run folder: the fit's record (``yolo-run.json``) and what ``resume`` checks against it.

``<out>/data`` holds the training set written for ultralytics (:mod:`.yoloset`), ``<out>/ultralytics`` ultralytics'
own run (``weights/last.pt``, ``results.csv``, ``args.yaml``) and ``<out>/yolo-run.json`` the fit's settings, data
fingerprint, planned length and epoch records, rewritten atomically after every epoch (see ``docs/yolo.md``).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Dict, Optional

from defectgen.io.atomic import write_text_atomic

RUN_FORMAT = "defectgen.detectors.yolo.run/1"
RUN_STATE = "yolo-run.json"
"""The run folder's record of a fit (settings, data fingerprint, epoch records) that ``resume`` checks."""
RUN_DATA = "data"
RUN_TRAINER = "ultralytics"
"""ultralytics' own folder inside the run folder (``weights/last.pt``, ``results.csv``, ``args.yaml``)."""


def last_checkpoint(run: Path) -> Path:
    """ultralytics' checkpoint of the last finished epoch, which ``resume`` continues from."""
    return run / RUN_TRAINER / "weights" / "last.pt"


def new_state(config: Dict[str, Any], epochs: Optional[int], images_seen: Optional[int], length: Dict[str, Any],
              before: Dict[str, Any], data_fingerprint: str) -> Dict[str, Any]:
    """The record of a fit that starts now: its settings, its length, the detector's counts ``before`` it."""
    return {"format": RUN_FORMAT, "config": config, "epochs": epochs, "images_seen": images_seen, "length": length,
            "before": before, "data_fingerprint": data_fingerprint, "records": [], "finished": False}


def write_state(run: Path, state: Dict[str, Any]) -> None:
    write_text_atomic(run / RUN_STATE, json.dumps(state, indent=1))


def clear_run(run: Path) -> None:
    """Make ``run`` ready for a new fit, removing what an earlier fit of ours left (never anything else)."""
    ours = (run / RUN_STATE).is_file()
    for name in (RUN_TRAINER,):
        if (run / name).exists():
            if not ours:
                raise ValueError(f"{str(run / name)!r} exists but {str(run)!r} is not a yolo run folder; "
                                 "choose another out folder")
            shutil.rmtree(run / name)
    (run / RUN_STATE).unlink(missing_ok=True)
    run.mkdir(parents=True, exist_ok=True)


def resume_state(run: Path, config: Dict[str, Any], epochs: Optional[int],
                 images_seen: Optional[int]) -> Dict[str, Any]:
    """The record of the interrupted fit in ``run``, checked against this fit's ``config`` and length."""
    path = run / RUN_STATE
    if not path.is_file():
        raise ValueError(f"nothing to resume: {str(run)!r} holds no {RUN_STATE} (not a yolo run folder)")
    state = json.loads(path.read_text())
    if state.get("format") != RUN_FORMAT:
        raise ValueError(f"{str(path)!r} is not a yolo run record")
    if state["finished"]:
        raise ValueError(f"the fit in {str(run)!r} finished; there is nothing to resume")
    saved = state.get("images_seen")  # records written before images_seen existed hold epochs only
    if saved != images_seen or (images_seen is None and int(state["epochs"]) != epochs):
        was = f"{saved} images seen" if saved is not None else f"{state['epochs']} epochs"
        now = f"{images_seen} images seen" if images_seen is not None else f"{epochs}"
        raise ValueError(f"the fit in {str(run)!r} was for {was}, not {now}")
    mine = {k: v for k, v in config.items() if k != "device"}
    theirs = {k: v for k, v in state["config"].items() if k != "device"}
    if mine != theirs:
        changed = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        raise ValueError(f"resume needs the settings of the interrupted fit; these differ: {changed}")
    if not last_checkpoint(run).is_file():
        raise ValueError(f"nothing to resume: {str(run)!r} has no checkpoint yet (the fit stopped in its first "
                         "epoch); start it again without resume")
    return state


def check_same_run(run: Path, state: Dict[str, Any], data_fingerprint: str, length: Dict[str, Any]) -> None:
    """Refuse to resume the fit recorded in ``state`` on other data or with another planned length."""
    if state["data_fingerprint"] != data_fingerprint:
        raise ValueError(f"resume needs the data of the interrupted fit in {str(run)!r}; this data "
                         "differs (start a new fit without resume)")
    if state.get("length", {}).get("steps") != length["steps"]:  # e.g. another mixing plan
        raise ValueError(f"the fit in {str(run)!r} was planned as {state.get('length')}, this one "
                         f"as {length}; start a new fit without resume")
