"""Allow ``python -m streamdet``."""

from streamdet.cli import main

raise SystemExit(main())
