"""Fitting synthetic defects to a few real ones: measure K labelled images, write an operator recipe.

DESIGN section 9: fitting is measurement -> recipe, never training. ``defectgen fit`` (and :func:`fit_defects`)
reads K real labelled images (chosen by :func:`~defectgen.io.labelled.choose_real`, the rule ``defectgen train
--real-count`` shares), measures their defects per class (:func:`measure_defects`: size and aspect relative to the
image, count per image, position and foreground, contrast against the surroundings), and writes an ordinary
recipe (:func:`fit_recipe`, :func:`write_recipe`): the real defects transplanted, plus shapes calibrated to the
measured numbers. Preview, generate, train and ablate use it like any other recipe. The report
(:mod:`.report`) sets real and synthetic statistics side by side, measured by the same function.

Modules, one concept each: :mod:`.measure` (statistics), :mod:`.recipe` (statistics -> recipe), :mod:`.synthetic`
(the recipe's defects on OK images), :mod:`.report` (markdown, plots, previews), :mod:`.fitting` (all of it, as the
CLI runs it). What fit shares with the rest of defectgen lives below it, and is exported here too:
:mod:`defectgen.io.labelled.real` (which real images: the rule ``train --real-count`` shares),
:mod:`defectgen.bank.box_masks` (the defect inside a label box) and :mod:`defectgen.bank.labelled` /
:func:`defectgen.bank.spec.bank_from_config` (a defect bank from a labelled set: the ``layout: labelled`` bank a
fitted recipe names).
"""
from ..bank.box_masks import MASK_SOURCES, DefectMask, estimate_box_mask, image_defect_masks
from ..bank.labelled import labelled_defects
from ..bank.spec import bank_from_config
from ..io.labelled.real import TRAINING_SPLITS, RealSpec, choose_names, read_real
from .fitting import FitResult, fit_defects
from .measure import DefectStatistics, load_statistics, measure_defects
from .recipe import FittedRecipe, choose_fill, fit_recipe, recipe_text, write_recipe
from .synthetic import load_ok_images, synthetic_set

__all__ = ["measure_defects", "DefectStatistics", "load_statistics", "fit_recipe", "FittedRecipe", "write_recipe",
           "recipe_text", "choose_fill", "fit_defects", "FitResult", "RealSpec", "TRAINING_SPLITS", "read_real",
           "choose_names", "estimate_box_mask", "image_defect_masks", "DefectMask", "MASK_SOURCES",
           "bank_from_config", "labelled_defects", "synthetic_set", "load_ok_images"]
