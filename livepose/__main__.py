"""`python -m livepose`: the same command line as the `livepose` console script."""
import sys

from livepose.cli import main

sys.exit(main())
