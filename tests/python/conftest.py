"""Shared helpers for the Python suite. The skyrelay fixtures come from the installed plugin."""

from __future__ import annotations

import sys
from pathlib import Path

# Let tests import helper modules that live next to them (wsraw.py).
sys.path.insert(0, str(Path(__file__).parent))
