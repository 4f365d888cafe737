"""Shared pytest set-up: make plugins/ importable as plain Python packages."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "plugins"))
