"""Recipes: how a cell's payload (libmxnet.so and what ships with it) is produced. One
module per recipe, each registered here; the pipeline, `invoke plan` and the stage cache
ask the registry and never name a recipe.

A new recipe is one module in this package (a Recipe subclass, registered) and, if it
runs scripts in containers, a folder recipes/<name>/ of the project. Tests and plug-ins
may register more with `register`.
"""
from .registry import CellImages, Produced, Recipe, get, names, register, with_recipe
from . import compile, jvm, maven, wheel  # noqa: F401,E402  (the built-in recipes register themselves)

__all__ = ["CellImages", "Produced", "Recipe", "get", "names", "register", "with_recipe"]
