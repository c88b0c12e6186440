"""``python -m attrkit`` = the ``attrkit`` command."""
import sys

from .cli import main

sys.exit(main())
