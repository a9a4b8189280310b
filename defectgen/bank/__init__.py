"""A bank of real defects cut from a few NG images, ready to be warped and pasted onto OK images.

Modules, one concept each: :mod:`.store` (:class:`DefectBank`: the entries on one canvas and the atlas they are
warped from), :mod:`.constructors` (building a bank from MVTec folders, aligned pairs and labelled sets),
:mod:`.files` (which files a bank config reads), :mod:`.pixels` (image and mask inputs as pixels),
:mod:`.cutting` (one defect's crop, ring and background), :mod:`.difference` (the masks of an aligned pair:
DeepPCB registration), :mod:`.box_masks` (the defect inside a label box), :mod:`.labelled` (the defects of a
labelled set) and :mod:`.spec` (a bank named in a recipe: :func:`as_bank`).
"""
from .difference import difference_masks
from .files import mvtec_bank_items
from .spec import BankSpec, as_bank
from .store import BankTensors, DefectBank

__all__ = ["DefectBank", "BankTensors", "BankSpec", "as_bank", "difference_masks", "mvtec_bank_items"]
