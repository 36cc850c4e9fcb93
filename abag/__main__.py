"""`python -m abag` is the `abag` command."""

import sys

from .cli import main

sys.exit(main())
