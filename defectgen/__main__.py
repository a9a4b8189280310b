"""``python -m defectgen``: the same command line as the ``defectgen`` console script."""
from .cli import main

raise SystemExit(main())
