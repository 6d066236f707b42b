"""`python -m dynakv` runs the command line."""

from dynakv.cli.main import main

raise SystemExit(main())
