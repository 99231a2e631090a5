"""Package namespaces that import a module only when one of its names is first asked for.

``import interp.store`` (or ``interp.model``) then costs nothing until ``interp.store.ActivationStore``
is used, so a module that needs only ``interp.store.readout`` does not load transformer_lens, and
``interp --help`` loads neither torch nor plotly. Each package also imports its names under
``TYPE_CHECKING``, for type checkers and IDEs.

>>> getattr_, dir_ = lazy_exports("interp", {"PromptSet": "interp.data"}, {})
>>> getattr_("PromptSet").__name__
'PromptSet'
>>> "PromptSet" in dir_()
True
"""

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, exports: dict[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for the package ``package`` (globals ``namespace``) whose name ``name`` lives in
    the module ``exports[name]``: always that module's current value (one a test replaced included).
    """

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
