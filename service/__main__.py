"""`python -m service serve ...` (same as the `skimserve` console script)."""
import sys

from .cli import main

sys.exit(main())
