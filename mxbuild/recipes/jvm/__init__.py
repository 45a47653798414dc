"""Recipes "wheel-jvm" and "compile-jvm": a cell's JVM half built from an Apache MXNet
source release, for the versions upstream never published for the JVM (1.6–1.9.x), on
top of the libmxnet.so another recipe makes:

- wheel-jvm: the official wheel's libmxnet.so, harvested as recipe "wheel" does (every
  existing cell, CPU or GPU, gets libmxnet-scala without compiling MXNet);
- compile-jvm: libmxnet.so compiled by recipe "compile".

To that payload they add libmxnet-scala.so (scala-package/native, compiled in the cell's
distro and linked against that libmxnet.so) and the thin jar + POM (scala-package core +
infer, built with Maven on JDK 8): source.py of this package. The cell ships libmxnet as the
underlying recipe makes it, plus the matrix's package for the JVM client (libmxnet-scala).
"""
from __future__ import annotations

import shutil
import sys
from dataclasses import replace
from typing import IO

from ... import jvm_client
from ...errors import ConfigError
from ...fetch import sha256_file
from ...matrix import Cell
from ...matrix.schema import PACKAGE_RE
from ...paths import module_digest
from ...payload import CLIENT_DIR, Part
from .. import compile as compile_recipe
from ..registry import CellImages, Produced, Recipe, get, register
from .build import INPUT_NAME, JvmBuildSpec, jvm_build
from . import source as jvm_source

PROVENANCE = ("libmxnet-scala.so was compiled by mxbuild from scala-package/native of the",
              "Apache MXNet source release ({source}) and linked against the libmxnet.so",
              "of the libmxnet package of the same version.")
JNI_REL = f"jni/{jvm_source.JNI_NAME}"
SOURCE_OPTIONS = compile_recipe.SOURCE_OPTIONS


class JvmHalfRecipe(Recipe):
    """The underlying recipe (`base`) plus the JVM half from source."""
    takes_source = True
    # both recipes take the same top-level key: parsed once, under one name
    input_name = INPUT_NAME
    matrix_keys = {"matrix": {"jvm_build": "a mapping: distro (one that ships JDK 8), jdk "
                                           "(its package)"}}

    def parse_inputs(self, scope, check) -> JvmBuildSpec | None:
        if "jvm_build" not in scope.doc:
            return None
        return scope.once("jvm_build", lambda: parse_jvm_build(check, scope.doc["jvm_build"],
                                                               scope.distros))

    def __init__(self, name: str, base: str):
        self.name, self.base_name = name, base
        self.reuse_reason = (f"stage cache: same {base} inputs, scala-package source and "
                             "JVM build")

    @property
    def base(self) -> Recipe:
        return get(self.base_name)

    @property
    def runs_upstream_tests(self) -> bool:
        """As its libmxnet.so's recipe: compile-jvm yes, wheel-jvm (the official binary,
        which is the reference itself) no."""
        return self.base.runs_upstream_tests

    def adapt(self, cell: Cell, catalog) -> Cell:
        """The cell also ships the matrix's package for the JVM client."""
        if any(p.client == "jvm" for p in cell.packages):
            return cell
        jvm = [p for p in catalog.values() if p.client == "jvm"]
        return replace(cell, packages=cell.packages + tuple(jvm[:1]))

    def unfit(self, cell: Cell) -> tuple[str, str] | None:
        if not any(p.client == "jvm" for p in cell.packages):
            return ("matrix.yaml defines no package for the JVM client",
                    "add packages.libmxnet-scala (files: [jni/*], depends_on: [libmxnet], "
                    "client: jvm)")
        if jvm_build(cell) is None:
            return ("matrix.yaml has no jvm_build (where scala-package is built)",
                    "add jvm_build: {distro: <a distro that ships JDK 8>, jdk: "
                    "openjdk-8-jdk-headless}")
        if (cell.client_wheel or cell.official_wheel) is None:
            return (f"no official wheel of MXNet {cell.mxnet}: scala-package generates its "
                    "operator API from a cpu libmxnet.so at build time",
                    "pin the version's cpu wheel in matrix.yaml")
        return self.base.unfit(cell) or self.arch_unfit(cell)

    def builds_for(self, cell: Cell) -> str | None:
        return self.base.builds_for(cell)

    def cache_inputs(self, ctx, cell: Cell, build_ref: str) -> dict | None:
        base = self.base.cache_inputs(ctx, cell, build_ref)
        # compile's inputs already name the source: its tree digest is not computed twice
        source = (base or {}).get("source") or compile_recipe.source_identity(ctx.opts, cell)
        if base is None or source is None:
            return None
        spec = jvm_build(cell)
        return {"base": {"recipe": self.base_name, **base}, "jvm_source": source,
                "code": module_digest(jvm_source, jvm_client, sys.modules[__name__]),
                "jvm_build": [spec.distro.name, spec.jdk],
                "scripts": ctx.data.digest("recipes/jvm", "docker/jvm-build.Dockerfile.j2",
                                           "docker/jni.Dockerfile.j2")}

    def plan(self, ctx, cell: Cell) -> tuple[str, str]:
        action, why = self.base.plan(ctx, cell)
        if action == "run" and compile_recipe.source_identity(ctx.opts, cell) is None:
            return "fail", f"no source for the JVM half: {SOURCE_OPTIONS}"
        return action, (f"{why}; libmxnet-scala.so and the thin jar from scala-package "
                        f"(JDK 8 on {jvm_build(cell).distro.name})")

    def package_image(self, ctx, cell: Cell, images: CellImages, logf: IO[str]):
        return self.base.package_image(ctx, cell, images, logf)

    def produce(self, ctx, cell: Cell, images: CellImages, logf: IO[str]) -> Produced:
        produced = self.base.produce(ctx, cell, images, logf)
        payload = produced.payload
        source = compile_recipe.resolve_source(cell, ctx.opts, logf)
        staged = jvm_source.stage(source.path, source.is_dir, source.description,
                                  source.epoch, ctx.opts.work_dir / cell.id / "jvm-source",
                                  logf)
        if staged.version != cell.mxnet:
            raise ConfigError(f"the source is MXNet {staged.version}, the cell {cell.id} is "
                              f"{cell.mxnet}", f"give the MXNet {cell.mxnet} source release")
        jni = jvm_source.jni_library(ctx, cell, staged, payload.dir, images.build, logf)
        thin = jvm_source.thin_jar(ctx, cell, staged, logf)

        (payload.dir / JNI_REL).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(jni.files[jvm_source.JNI_NAME], payload.dir / JNI_REL)
        clients = {}
        for name, path in thin.files.items():
            rel = f"{CLIENT_DIR}/{name}"
            (payload.dir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, payload.dir / rel)
            clients[rel] = sha256_file(payload.dir / rel)
        part = Part((JNI_REL,), self.name, staged.description,
                    tuple(line.format(source=staged.description) for line in PROVENANCE))
        payload = replace(payload, files={**payload.files,
                                          JNI_REL: sha256_file(payload.dir / JNI_REL)},
                          client_files={**(payload.client_files or {}), **clients},
                          recipe=self.base_name, parts=(*payload.parts, part))
        payload.save()
        return Produced(payload, {**produced.report,
                                  "jvm": {"jni": jni.report, "thin_jar": thin.report}})


def parse_jvm_build(c, spec, distros) -> JvmBuildSpec:
    c.mapping(spec, "jvm_build", {"distro": "a distro defined under distros that ships JDK 8",
                                  "jdk": "the JDK 8 package, e.g. openjdk-8-jdk-headless"})
    name = c.string(spec["distro"], "jvm_build.distro")
    if name not in distros:
        c.fail("jvm_build.distro", f"{name!r} is not defined under distros",
               "one of " + ", ".join(distros))
    return JvmBuildSpec(distros[name], c.string(spec["jdk"], "jvm_build.jdk", PACKAGE_RE,
                                                "a Debian package name"))


register(JvmHalfRecipe("wheel-jvm", "wheel"))
register(JvmHalfRecipe("compile-jvm", "compile"))
