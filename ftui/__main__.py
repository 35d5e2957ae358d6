"""`python -m ftui`, the same as the `ftui` command."""

import sys

from ftui import main

sys.exit(main())
