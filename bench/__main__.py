"""`python -m bench ...` runs the CLI from the source tree, without installing."""
import sys

from bench.cli import main

sys.exit(main())
