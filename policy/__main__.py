"""``python -m policy``: the same command line as ``keras-policy``."""

from policy.cli import main

raise SystemExit(main())
