"""Diagnostics of a backbone's embeddings and of a detector's scores (``defectgen features``; docs/features.md).

- :mod:`.backbone`: the embedder (a backbone file, a CutPaste model's encoder, or a random init; pooled features);
- :mod:`.groups`: the image groups: normal, one per synthetic-defect family, real defects;
- :mod:`.separability`: kNN / linear-probe separability and closeness to the real defects (scikit-learn);
- :mod:`.diagnostics`: all of it for one backbone, as a report and a table;
- :mod:`.roc`: a detector's ROC curves on a labelled test set, through the evaluator's prediction path;
- :mod:`.plots`: the t-SNE / UMAP map and the ROC plot (matplotlib);
- :mod:`.cli`: the command.

Nothing is imported here: the command's entry point (``detectors.features.cli``) must stay light, so
``defectgen --help`` loads no torch model, data reader or metric; import from the submodules.
"""
