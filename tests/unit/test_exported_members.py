"""Each module's ``__all__`` says exactly what it offers (httpx's ``test_exported_members``).

For every module of the package that declares ``__all__``: each listed name exists, and each
public name the module itself defines (a top-level ``def``, ``class`` or assignment; in a
package's ``__init__``, also each name it re-exports) is listed, unless :data:`NOT_EXPORTED`
says why not. A name added without a thought for ``__all__`` fails here, not in a reader's
``from ... import *``.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import logging
import pkgutil
from types import ModuleType
from typing import Any, ParamSpec, TypeVar

import pytest
import structlog

import dhan_postback

_SUBCOMMANDS = "sub-commands: reached through their group, which is exported"
NOT_EXPORTED: dict[str, frozenset[str]] = {
    "dhan_postback.cli.deliveries": frozenset(
        {"list_deliveries", "replay", "show"}
    ),  # _SUBCOMMANDS
    "dhan_postback.cli.endpoints": frozenset(
        {"list_endpoints", "pause", "resume", "rotate_secret", "show"}
    ),  # ditto
    "dhan_postback.cli.tokens": frozenset({"create", "list_tokens", "revoke"}),  # ditto
}
"""Public names a module defines on purpose without exporting them, by module, with the reason
next to each entry. Module loggers and type variables are never exported (:func:`_by_nature`)."""


_LOGGER_TYPES = (logging.Logger, type(structlog.get_logger()))


def _by_nature(value: Any) -> bool:
    """A module's logger or a type variable: public by spelling, never part of the surface."""
    return isinstance(value, (TypeVar, ParamSpec, *_LOGGER_TYPES))


def _modules() -> list[str]:
    names = [dhan_postback.__name__]
    for info in pkgutil.walk_packages(dhan_postback.__path__, prefix="dhan_postback."):
        if not info.name.endswith("__main__"):  # importing it would run the program
            names.append(info.name)
    return sorted(names)


def _defined_names(module: ModuleType) -> set[str]:
    """The names bound at the top level of the module's source, imports excepted (but a
    package's ``from .part import name`` counts: that is how a package defines its surface)."""
    tree = ast.parse(inspect.getsource(module))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, ast.AnnAssign | ast.AugAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom) and node.level == 1 and _is_package(module):
            names.update(_imported_names(module, node))
    return names


def _imported_names(package: ModuleType, node: ast.ImportFrom) -> set[str]:
    """What a package's ``from .part import ...`` binds: the names listed, or for ``*`` every
    name in the part's ``__all__`` (a part without one fails here: ``*`` would then re-export
    whatever the part happens to import)."""
    if [alias.name for alias in node.names] == ["*"]:
        part = importlib.import_module(f"{package.__name__}.{node.module}")
        return set(part.__all__)
    return {alias.asname or alias.name for alias in node.names}


def _is_package(module: ModuleType) -> bool:
    return hasattr(module, "__path__")


def _with_all() -> list[str]:
    return [name for name in _modules() if hasattr(importlib.import_module(name), "__all__")]


@pytest.mark.parametrize("name", _with_all())
def test_every_name_in_all_exists(name: str) -> None:
    module = importlib.import_module(name)
    missing = [member for member in module.__all__ if not hasattr(module, member)]
    assert missing == []


@pytest.mark.parametrize("name", _with_all())
def test_every_public_name_a_module_defines_is_in_all(name: str) -> None:
    module = importlib.import_module(name)
    public = {
        member
        for member in _defined_names(module)
        if not member.startswith("_") and not _by_nature(getattr(module, member, None))
    }
    unlisted = public - set(module.__all__) - NOT_EXPORTED.get(name, frozenset())
    assert sorted(unlisted) == []


def test_every_module_with_public_names_declares_all() -> None:
    """A module without ``__all__`` would escape the two tests above."""
    undeclared = []
    for name in _modules():
        module = importlib.import_module(name)
        public = [member for member in _defined_names(module) if not member.startswith("_")]
        if public and not hasattr(module, "__all__"):
            undeclared.append(name)
    assert undeclared == []
