"""`python -m abag` is the `abag` command."""

from abag.cli import main
from abag.distributed import exit_process

exit_process(main())
