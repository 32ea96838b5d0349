"""`python -m sporep_hpc` is the `sporep-hpc` command."""

from .cli import main

raise SystemExit(main())
