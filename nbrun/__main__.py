"""``python -m nbrun IN.ipynb OUT.ipynb [-p NAME VALUE]...`` or ``python -m nbrun serve --socket PATH``."""

import sys

from nbrun import main

sys.exit(main())
