#!/usr/bin/env python3
"""Regenerate the codegen golden files: ``python scripts/regenerate_golden.py``.

Every definition in ``tests/codegen/golden/`` (``*.yaml``, ``*.json``) is
generated into the ``.py`` file of the same stem. Review the diff before
committing it: a change here is a change in what users get.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "codegen" / "golden"


def main() -> int:
    sys.path.insert(0, str(ROOT / "src"))
    from flowledger.codegen import generate

    for definition in sorted([*GOLDEN.glob("*.yaml"), *GOLDEN.glob("*.json")]):
        target = definition.with_suffix(".py")
        source = generate(definition, display_name=definition.name, relative_to=GOLDEN)
        old = target.read_text(encoding="utf-8") if target.exists() else None
        if old != source:
            target.write_text(source, encoding="utf-8", newline="\n")
            print(f"updated {target.relative_to(ROOT)}")
        else:
            print(f"unchanged {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
