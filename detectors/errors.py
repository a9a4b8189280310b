"""Exceptions shared by the detectors."""


class NotAModelFile(ValueError):
    """A detector's ``load`` was given a file that is not a model of its kind.

    A ``ValueError`` subclass, so callers that only catch ``ValueError`` still work; ``defectgen eval`` uses the
    type to tell "another kind of file: try the next loader" from "this model is unusable here".
    """
