"""``python -m transflow``: the ``transflow`` command."""

from transflow.cli.app import main

raise SystemExit(main())
