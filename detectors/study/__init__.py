"""Study runner: which synthetic defects, in which detector, find which real defects (``defectgen ablate``).

- :mod:`.recipe`: the study recipe (YAML), checked and resolved for a budget, expanded into cells;
- :mod:`.data`: the study's OK images, real labels and test sets, read once;
- :mod:`.cell`: one cell: train once, evaluate on every test set;
- :mod:`.runner`: every cell into its own folder, resumable, shardable;
- :mod:`.report`: results.jsonl / .csv, table.md, heatmaps, ranking and synthetic validation;
- :mod:`.ranks`: Spearman's rank correlation and its confidence interval.
"""
from .recipe import Cell, RecipeError, Study, expand, load_study
from .runner import run_study

__all__ = ["Cell", "RecipeError", "Study", "expand", "load_study", "run_study"]
