"""Built-in detectors that measure how well synthetic defects generalise to real ones.

Empty for now: the CutPaste self-supervised detector and the object detectors land in later issues.
"""
