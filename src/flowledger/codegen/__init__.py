"""flowledger codegen: workflow definitions become instrumented Python modules.

``load(path)`` reads and validates a definition into its typed model,
``generate(path)`` returns the generated module's source. Every problem in a
definition is reported at once through :class:`flowledger.DefinitionError`.
"""

from __future__ import annotations

from flowledger._exceptions import GenerationError
from flowledger.codegen._generate import generate, load
from flowledger.codegen._model import Definition

__all__ = ["Definition", "GenerationError", "generate", "load"]
