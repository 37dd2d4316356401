"""``python -m autoprompt_search.cli``: the same as the ``autoprompt-search`` command."""

import sys

from .app import main

sys.exit(main())
