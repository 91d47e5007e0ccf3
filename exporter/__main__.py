"""`python -m exporter`: the same as the `falco-exporter` command."""

from exporter.cli import main

raise SystemExit(main())
