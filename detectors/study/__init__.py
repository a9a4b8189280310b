"""Study runner: which synthetic defects, in which detector, find which real defects (``defectgen ablate``).

- :mod:`.recipe`: the study recipe (YAML): read, resolved for a budget, checked by :mod:`.schema` (the keys
  a recipe may hold and the check of each section);
- :mod:`.plan`: the resolved :class:`Study` and the cells it expands into;
- :mod:`.splits`: the data's fixed training / test splits; :mod:`.overlap`: no test data in training;
- :mod:`.data`: the study's OK images, real labels and test sets, read once;
- :mod:`.cell`: one cell: train once, evaluate on every test set;
- :mod:`.cell_run`: one cell into its folder (``cell.json``, ``log.txt``, ``result.json`` last);
- :mod:`.folder`: the study folder (files, shards, the refusal of another study's folder);
- :mod:`.runner`: every cell into its own folder, resumable, shardable;
- :mod:`.cell_tasks`: the cells as tasks of an executor (``--executor ray|slurm``), the folder still the truth;
- :mod:`.report`: results.jsonl / .csv, table.md, heatmaps, ranking and synthetic validation;
- :mod:`.methods`: the method ranking: which synthetic test set ranks the detectors as a real one does;
- :mod:`.ranks`: Spearman's rank correlation and its confidence interval.
"""
from .plan import Cell, Study, expand
from .recipe import load_study
from .runner import run_study
from .schema import RecipeError

__all__ = ["Cell", "RecipeError", "Study", "expand", "load_study", "run_study"]
