"""``python -m dask_aws_magic``: the terminal command, for a kernel's environment with no console script on its PATH."""

import sys

from .faces.cli import main

sys.exit(main())
