"""`python -m runway_archiver.cli`: the `runway-archiver` command (`make demo` and `make local` run it so)."""

from . import main

raise SystemExit(main())
