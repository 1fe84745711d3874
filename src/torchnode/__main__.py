"""``python -m torchnode``: the command line."""

from torchnode.cli import main

raise SystemExit(main())
