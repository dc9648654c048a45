"""``python -m weightcast`` is the ``weightcast`` command."""
from .cli import main

raise SystemExit(main())
