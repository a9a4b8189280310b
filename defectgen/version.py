"""defectgen's version, in a module of its own so that code below the package (``generate`` records it in
``job.json``) can read it without importing the whole package. Keep it equal to ``pyproject.toml``'s."""

__version__ = "0.1.0"
