"""One map of the data folders (recipes/, docker/, packaging/, tests/smoke/) and the one
template environment that renders what they hold; plus the digests that key the stage
cache, so a stage's key hashes exactly the files and modules its output depends on.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import jinja2

from .cache import tree_digest


@dataclass(frozen=True)
class DataFolders:
    root: Path              # the project checkout

    @property
    def recipes(self) -> Path:
        return self.root / "recipes"

    def recipe(self, name: str) -> Path:
        """recipes/<name>/: the scripts and presets a recipe runs inside containers."""
        return self.recipes / name

    @property
    def docker(self) -> Path:
        return self.root / "docker"

    @property
    def packaging(self) -> Path:
        return self.root / "packaging"

    @property
    def smoke_tests(self) -> Path:
        """tests/smoke/: the suite that runs inside the runtime containers."""
        return self.root / "tests" / "smoke"

    @property
    def examples(self) -> Path:
        return self.root / "examples"

    def render(self, template: str, **values) -> str:
        """Render `docker/…`, `packaging/…` or `report/…` (mxbuild/templates)."""
        return templates(self.root).get_template(template).render(**values)

    def digest(self, *names: str) -> str:
        """sha256 over data files or folders, given relative to the root."""
        return tree_digest(*(self.root / n for n in names))


@functools.cache   # one environment per project root for the process: templates are data
def templates(root: Path) -> jinja2.Environment:
    """The one template environment. HTML (report/*.html.j2) is escaped; Dockerfiles and
    Debian control files are not (they are not markup)."""
    return jinja2.Environment(
        loader=jinja2.PrefixLoader({
            "docker": jinja2.FileSystemLoader(str(root / "docker")),
            "packaging": jinja2.FileSystemLoader(str(root / "packaging")),
            "report": jinja2.PackageLoader("mxbuild", "templates"),
        }),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",),
                                            default_for_string=False),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def module_digest(*modules: ModuleType) -> str:
    """sha256 of the named modules' source: the Python code that decides a stage's output
    (and nothing else: editing report.py must not invalidate cached packages)."""
    h = hashlib.sha256()
    for module in sorted(modules, key=lambda m: m.__name__):
        h.update(module.__name__.encode() + b"\0")
        h.update(hashlib.sha256(inspect.getsource(module).encode()).digest())
    return h.hexdigest()
