"""``python -m coordexp_train``: the CLI, as torchrun and accelerate launch start it."""

import sys

from coordexp_train.cli import main

sys.exit(main())
