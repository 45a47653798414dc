"""The table of plug-ins: every recipe and thin-client kind mxbuild has, by name, and the
module that implements it (a client kind with the module of its smoke suite).

The matrix schema checks names against this table without importing a plug-in; the
pipeline imports this table, and a plug-in's module is imported the first time its object
is asked for (`recipe`, `client_kind`, `smoke_suite`), when it registers itself. Tests
and plug-ins outside the package add theirs with `register_recipe` / `register_client`.
This module imports no other mxbuild module but errors: nothing can import it into a
circle.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from .errors import SelectionError


@dataclass(frozen=True)
class ClientEntry:
    module: str   # registers the kind (a thin.ThinClientKind) on import
    smoke: str    # holds SMOKE_SUITE: the kind's smoke suite (smoke.Suite)


# name -> the module that registers it (`recipes.registry.register`), in the order
# `invoke plan` and error hints list them
RECIPES: dict[str, str] = {
    "compile": "mxbuild.recipes.compile",
    "wheel-jvm": "mxbuild.recipes.jvm",
    "compile-jvm": "mxbuild.recipes.jvm",
    "maven": "mxbuild.recipes.maven",
    "wheel": "mxbuild.recipes.wheel",
}

CLIENTS: dict[str, ClientEntry] = {
    "python": ClientEntry("mxbuild.client", "mxbuild.smoke"),
    "jvm": ClientEntry("mxbuild.jvm_client", "mxbuild.smoke.jvm"),
}

# Process-wide: the registered objects (recipes.Recipe, thin.ThinClientKind), by name.
_recipes: dict[str, object] = {}
_clients: dict[str, object] = {}
_suites: dict[str, object] = {}


def recipe_names() -> tuple[str, ...]:
    return tuple(dict.fromkeys([*RECIPES, *_recipes]))


def client_names() -> tuple[str, ...]:
    return tuple(dict.fromkeys([*CLIENTS, *_clients]))


def register_recipe(recipe) -> None:
    _recipes[recipe.name] = recipe


def unregister_recipe(name: str) -> None:
    """Forget a recipe registered from outside the table (a test's, when it is done)."""
    if name not in RECIPES:
        _recipes.pop(name, None)


def register_client(kind, suite=None) -> None:
    """A client kind, and (for one outside the table) its smoke suite."""
    _clients[kind.name] = kind
    if suite is not None:
        _suites[kind.name] = suite


def _registered(registry: dict, name: str, module: str | None, what: str, known) -> object:
    """registry[name], importing `module` (which registers it) first if it is not there."""
    if name not in registry and module is not None:
        importlib.import_module(module)
    try:
        return registry[name]
    except KeyError:
        raise SelectionError(f"unknown {what} {name!r}",
                             "use one of: " + ", ".join(known())) from None


def recipe(name: str):
    """The recipe registered under `name` (its module imported if it is not yet)."""
    return _registered(_recipes, name, RECIPES.get(name), "recipe", recipe_names)


def client_kind(name: str):
    """The thin-client kind registered under `name` (its module imported if it is not yet)."""
    entry = CLIENTS.get(name)
    return _registered(_clients, name, entry.module if entry else None, "thin-client kind",
                       client_names)


def smoke_suite(name: str):
    """The smoke suite of a client kind (smoke.Suite)."""
    if name not in _suites:
        if name not in CLIENTS:
            raise SelectionError(f"thin-client kind {name!r} has no smoke suite",
                                 "register it with its suite: plugins.register_client")
        _suites[name] = importlib.import_module(CLIENTS[name].smoke).SMOKE_SUITE
    return _suites[name]


def load_all() -> None:
    """Import every plug-in of the table (so that all are registered)."""
    for name in RECIPES:
        recipe(name)
    for name in CLIENTS:
        client_kind(name)
