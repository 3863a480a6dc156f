"""Extra outputs `expc compile` can write (DESIGN §7): name -> (file, builder).

This module only names the targets, so validation can check `project.targets`
without importing them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from expc.outputs.bundle_types import Bundle

# Where each writes is `outputs.layout.TARGETS`.
NAMES = ("amplitude",)


def builder(name: str) -> Callable[[Bundle], Any]:
    if name == "amplitude":
        from expc.outputs.targets.amplitude import export

        return export
    raise KeyError(name)
