"""``python -m qianyi ...`` (and ``torchrun --nproc-per-node N -m qianyi run ...``): the qianyi CLI."""
import sys

from .cli import main

sys.exit(main())
