"""`python -m sv4d_kit ...` is `sv4d-kit ...` (what torchrun and accelerate launch start: `-m sv4d_kit batch ...`)."""

import sys

from sv4d_kit.cli import main

sys.exit(main())
