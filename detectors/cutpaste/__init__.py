"""The CutPaste self-supervised anomaly detector (Li et al., CVPR 2021) on defectgen pretext tasks.

``CutPasteDetector(pretext="3way").fit(folder).score(images)``; see :mod:`.detector` for the method.
"""
from .density import GaussianDensity, ledoit_wolf
from .detector import FORMAT, LEVELS, CutPasteDetector, NotAModelFile
from .network import CutPasteNet
from .pretext import NAMED as PRETEXTS
from .pretext import Pretext

__all__ = ["CutPasteDetector", "CutPasteNet", "GaussianDensity", "ledoit_wolf", "Pretext", "PRETEXTS", "FORMAT",
           "LEVELS", "NotAModelFile"]
