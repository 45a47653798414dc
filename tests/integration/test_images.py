import dataclasses
import io

import pytest

from mxbuild import images
from mxbuild.containers import CA_ENV, CA_MOUNT, Container
from mxbuild.errors import ImageError
from mxbuild.fetch import fetch_wheel
from mxbuild.matrix import BaseSpec
from mxbuild.pins import Pins
from mxbuild.smoke.client_image import ensure_client_image

from ..conftest import ctx_with


def test_base_image_is_reused_and_checked_against_pins(run_ctx, cpu_cell, cell_images,
                                                       tmp_path):
    """Each verdict forced with a pins.lock of the test's own: the pinned image, another
    image (drift named package by package), no pin; pins.lock is never written."""
    base, distro = cell_images[0], cpu_cell.distro

    def ensure_with(bases: dict) -> str:
        pins = Pins(tmp_path / "pins.lock", bases)
        pins.write()
        before = pins.path.read_bytes()
        log = io.StringIO()
        ctx = ctx_with(run_ctx, dataclasses.replace(run_ctx.opts, pins_path=pins.path))
        assert images.ensure_base(ctx, distro, log) == base
        assert pins.path.read_bytes() == before
        assert log.getvalue().startswith(f"reusing base image {base.ref} ({base.id})\n")
        return log.getvalue()
    packages = images.image_packages(run_ctx.docker, base.ref)
    pinned = {"inputs": images.inputs_digest(distro), "id": base.id, "packages": packages}
    assert f"base image {base.id} is the one pins.lock pins" in ensure_with(
        {"debian12": pinned})
    other_id = "sha256:" + "0" * 64
    drifted = ensure_with({"debian12": {**pinned, "id": other_id,
                                        "packages": {**packages, "bash": "5.0-1"}}})
    assert (f"warning: base image of debian12 drifted from pins.lock: {other_id} → {base.id}; "
            f"packages: bash 5.0-1 → {packages['bash']}\n"
            "  if intended, record it: invoke lock --distro debian12") in drifted
    assert ("warning: debian12 is not pinned in pins.lock\n"
            "  if intended, record it: invoke lock --distro debian12") in ensure_with({})


def test_bootstrap_from_scratch_verifies_the_archive_and_is_reused(docker_client, run_ctx,
                                                                  cpu_cell, tmp_path):
    # Different inputs (an extra component) force a real bootstrap (mmdebstrap + docker load).
    spec = dataclasses.replace(cpu_cell.distro.base.bootstrap, components=("main", "contrib"))
    distro = dataclasses.replace(cpu_cell.distro,
                                 base=dataclasses.replace(cpu_cell.distro.base, bootstrap=spec))
    tag = images.base_tag(distro)
    pins = tmp_path / "pins.lock"
    ctx = ctx_with(run_ctx, dataclasses.replace(run_ctx.opts, pins_path=pins))
    def remove():
        if docker_client.images.list(name=tag):
            docker_client.images.remove(tag, force=True)
    remove()
    try:
        log = io.StringIO()
        made = images.ensure_base(ctx, distro, log)
        assert made.ref == tag
        # the archive was verified with the pinned key only, which the image's apt trusts
        assert f"apt in the image trusts {spec.key_fingerprint}" in log.getvalue()
        assert "debian12 is not pinned in pins.lock" in log.getvalue()
        assert not pins.exists()                              # builds never write pins
        with Container(docker_client, made.ref, label="bootstrap-check") as box:
            out = box.run(["cat", "/etc/os-release"]).output
        assert "VERSION_CODENAME=bookworm" in out
        log2 = io.StringIO()
        assert images.ensure_base(ctx, distro, log2) == made
        assert "reusing" in log2.getvalue() and "mmdebstrap" not in log2.getvalue()
    finally:
        remove()


def test_registry_base_needs_its_digest_in_pins_and_must_be_pullable(run_ctx, cpu_cell,
                                                                     tmp_path):
    image = "registry.invalid/nvidia/cuda:11.2.2-runtime-ubuntu20.04"
    distro = dataclasses.replace(cpu_cell.distro, base=BaseSpec(image=image))
    pins = Pins(tmp_path / "pins.lock")
    pins.write()
    ctx = ctx_with(run_ctx, dataclasses.replace(run_ctx.opts, pins_path=pins.path))
    with pytest.raises(ImageError) as info:
        images.ensure_base(ctx, distro, io.StringIO())
    assert "has no digest in pins.lock" in info.value.message
    assert "invoke lock --distro debian12" in info.value.hint
    pins.with_base("debian12", {"kind": "registry", "image": image,
                                "digest": "sha256:" + "a" * 64}).write()
    with pytest.raises(ImageError) as info:
        images.ensure_base(ctx, distro, io.StringIO())
    assert f"cannot pull {image}@sha256:" in info.value.message
    assert "docker load" in info.value.hint


def test_derived_images_are_tagged_by_content(docker_client, run_ctx, cpu_cell, cell_images):
    base, build, runtime = cell_images
    log = io.StringIO()
    assert images.ensure_build_image(run_ctx, cpu_cell, base, log) == build
    assert "reusing" in log.getvalue()
    text = run_ctx.data.render("docker/build.Dockerfile.j2", base=base, distro=cpu_cell.distro)
    assert build.ref.endswith(images.content_hash(text)[:12])
    assert base.id in text   # a new base digest means a new build image
    # the runtime image is the plain distro + Python: no build tools
    with Container(docker_client, runtime.ref, label="runtime-check") as box:
        assert box.run(["python3", "--version"]).exit_code == 0
        for tool in ("lintian", "patchelf", "dpkg-shlibdeps"):
            assert box.run(["sh", "-c", f"command -v {tool}"], check=False).exit_code != 0, tool


def test_extra_ca_bundle_never_lands_in_an_image(docker_client, run_ctx, cpu_cell, test_opts,
                                                 cell_images):
    assert test_opts.extra_ca_bundle is not None, "the host has a system CA bundle"
    wheel = fetch_wheel(cpu_cell.official_wheel, test_opts.cache_dir / "downloads",
                        test_opts.extra_ca_bundle)
    client_image = ensure_client_image(run_ctx, cpu_cell, cell_images[2], wheel, io.StringIO())
    attrs = docker_client.images.get(client_image.ref).attrs
    env = " ".join(attrs["Config"].get("Env") or [])
    assert CA_MOUNT not in env and not any(k in env for k in CA_ENV)
    with Container(docker_client, client_image.ref, label="ca-check") as box:
        assert box.run(["test", "-e", CA_MOUNT], check=False).exit_code != 0
        # the image has the client's dependencies but no client and no native library:
        # the smoke run installs mxnet-thin from the repository, libmxnet from the .deb
        assert box.run(["/opt/mxnet-client/bin/python", "-c", "import numpy, requests"]
                       ).exit_code == 0
        assert box.run(["/opt/mxnet-client/bin/python", "-c", "import mxnet"],
                       check=False).exit_code != 0
        # (numpy's own OpenBLAS is numpy's business; MXNet's native stack is absent)
        assert box.run(["sh", "-c", "find /opt/mxnet-client -name 'libmxnet*' -o -path "
                        "'*/mxnet/*.so*'"]).output.strip() == ""
    # while a build container runs, the bundle is there (mounted read-only) and trusted
    with Container(docker_client, client_image.ref, label="ca-mounted",
                   extra_ca=test_opts.extra_ca_bundle) as box:
        assert box.run(["test", "-r", CA_MOUNT]).exit_code == 0
        assert box.run(["sh", "-c", "echo x >> " + CA_MOUNT], check=False).exit_code != 0
        assert box.run(["printenv", "PIP_CERT"]).output.strip() == CA_MOUNT
