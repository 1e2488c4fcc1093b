"""``python -m transflow``: the ``transflow`` command."""

from transflow.cli import main

raise SystemExit(main())
