"""``python -m nbrun IN.ipynb OUT.ipynb [-p NAME VALUE]...`` or ``python -m nbrun serve --socket PATH``.

The process dies with the one that started it (a DVC stage, ``.ci/repro``): :func:`nbrun.lifeline.die_with_parent`.
"""

import sys

from nbrun import lifeline, main

lifeline.die_with_parent()
sys.exit(main())
