"""Images through the artifact cache (a shared directory here): an engine without an image
loads it instead of building or bootstrapping it; what does not verify is a warning and a
local build."""
import dataclasses
import io
import json
import uuid

import pytest

from mxbuild import images
from mxbuild.containers import Container
from mxbuild.image_store import ImageStore
from mxbuild.repo.storage import LocalStorage

REPO = "mxbuild/test-image-store"


@pytest.fixture
def store_ctx(run_ctx, tmp_path):
    store = ImageStore(LocalStorage(tmp_path / "artifacts"), tmp_path / "transfer")
    return dataclasses.replace(run_ctx, image_store=store)


@pytest.fixture
def dockerfile(cell_images):
    """A tiny image on the debian12 base, its tag unique to this test."""
    base = cell_images[0]
    return (f"FROM {base.ref}\nLABEL org.mxbuild.test=\"{uuid.uuid4().hex}\"\n"
            "RUN echo made-here > /made\n")


def _drop(docker_client, tag):
    if docker_client.images.list(name=tag):
        docker_client.images.remove(tag, force=True)


def _index(tmp_path, tag) -> tuple:
    repo, _, name = tag.rpartition(":")
    path = tmp_path / "artifacts" / "images" / repo / name / "index.json"
    return path, json.loads(path.read_text())


def test_a_built_image_is_stored_then_loaded_by_an_engine_without_it(
        store_ctx, docker_client, dockerfile, tmp_path):
    log = io.StringIO()
    built = images.build_from_template(store_ctx, REPO, "t", dockerfile, log)
    try:
        assert f"building {built.ref}" in log.getvalue()
        assert "stored" in log.getvalue()
        _, index = _index(tmp_path, built.ref)
        assert index["id"] == built.id and index["tag"] == built.ref
        tar = tmp_path / "artifacts" / "images" / built.ref.replace(":", "/") / index["tar"]
        assert tar.stat().st_size == index["size"] > 0

        _drop(docker_client, built.ref)
        log2 = io.StringIO()
        loaded = images.build_from_template(store_ctx, REPO, "t", dockerfile, log2)
        assert loaded == built                                  # the same image id
        assert "loaded" in log2.getvalue() and "building" not in log2.getvalue()
        with Container(docker_client, loaded.ref, label="image-store-check") as box:
            assert box.run(["cat", "/made"]).output == "made-here\n"
        # present now: neither loaded nor stored again
        log3 = io.StringIO()
        assert images.build_from_template(store_ctx, REPO, "t", dockerfile, log3) == built
        assert log3.getvalue().startswith("reusing") and "stored" not in log3.getvalue()
    finally:
        _drop(docker_client, built.ref)


def test_an_image_that_does_not_verify_is_a_warning_and_a_local_build(
        store_ctx, docker_client, dockerfile, tmp_path):
    built = images.build_from_template(store_ctx, REPO, "t", dockerfile, io.StringIO())
    try:
        index_path, index = _index(tmp_path, built.ref)
        # 1. the index records another image id: the loaded image is removed, built here
        index_path.write_text(json.dumps({**index, "id": "sha256:" + "0" * 64}))
        _drop(docker_client, built.ref)
        log = io.StringIO()
        again = images.build_from_template(store_ctx, REPO, "t", dockerfile, log)
        assert "warning:" in log.getvalue() and "the index records sha256:000" in log.getvalue()
        assert f"building {built.ref}" in log.getvalue()
        assert again.ref == built.ref
        # 2. the tar is not the bytes its index names: not loaded at all, built here
        index_path.write_text(json.dumps(index))
        tar = index_path.parent / index["tar"]
        with open(tar, "r+b") as f:
            f.seek(tar.stat().st_size // 2)
            f.write(b"corrupt")
        _drop(docker_client, built.ref)
        log2 = io.StringIO()
        images.build_from_template(store_ctx, REPO, "t", dockerfile, log2)
        assert "is not the bytes its index names" in log2.getvalue()
        assert f"building {built.ref}" in log2.getvalue()
    finally:
        _drop(docker_client, built.ref)


def test_a_base_image_is_loaded_instead_of_bootstrapped(store_ctx, docker_client, cpu_cell,
                                                       cell_images, tmp_path):
    # Other bootstrap inputs give another base tag; the artifact cache is seeded with the
    # debian12 base under that tag, so ensure_base must load it, never bootstrap.
    spec = dataclasses.replace(cpu_cell.distro.base.bootstrap, components=("main", "contrib"))
    distro = dataclasses.replace(cpu_cell.distro,
                                 base=dataclasses.replace(cpu_cell.distro.base, bootstrap=spec))
    tag = images.base_tag(distro)
    _drop(docker_client, tag)
    docker_client.images.get(cell_images[0].id).tag(tag)
    try:
        store_ctx.image_store.save(docker_client, tag, docker_client.images.get(tag),
                                   io.StringIO())
        docker_client.images.remove(tag)              # the untag: the engine lacks the tag
        # invoke plan knows it without loading: the derived tags follow from the recorded id
        planned = images.planned_images(store_ctx, dataclasses.replace(cpu_cell, distro=distro))
        assert planned[0] == ("base", tag, "artifact cache")
        assert planned[1][1] == images.template_tag(
            images.BUILD_REPO, "debian12", images._dockerfile(
                store_ctx, "build", images.ImageRef(tag, cell_images[0].id), distro))
        assert not docker_client.images.list(name=tag)
        log = io.StringIO()
        base = images.ensure_base(store_ctx, distro, log)
        assert base == images.ImageRef(tag, cell_images[0].id)
        assert "loaded" in log.getvalue() and "mmdebstrap" not in log.getvalue()
        # the recorded id checked, then pins.lock's: this distro is not pinned there
        assert "debian12 is not pinned" in log.getvalue() or "pins other" in log.getvalue()
    finally:
        _drop(docker_client, tag)


def test_an_engine_that_has_an_image_fills_an_empty_artifact_cache(
        run_ctx, store_ctx, docker_client, dockerfile, tmp_path):
    plain = dataclasses.replace(run_ctx, image_store=ImageStore(None, None))
    built = images.build_from_template(plain, REPO, "t", dockerfile, io.StringIO())
    try:
        log = io.StringIO()
        assert images.build_from_template(store_ctx, REPO, "t", dockerfile, log) == built
        assert "reusing" in log.getvalue() and "stored" in log.getvalue()
        assert _index(tmp_path, built.ref)[1]["id"] == built.id
    finally:
        _drop(docker_client, built.ref)


def test_no_artifact_cache_is_a_no_op_store(run_ctx, docker_client, dockerfile, tmp_path):
    from mxbuild.context import open_run
    # open_run wires the store from the options: none without an artifact cache…
    plain = open_run(dataclasses.replace(run_ctx.opts, artifact_cache=None),
                     docker=docker_client, gpu=False)
    assert plain.image_store.remote is None
    # …the cache's storage with one
    cached = open_run(dataclasses.replace(run_ctx.opts, artifact_cache=str(tmp_path / "ac")),
                      docker=docker_client, gpu=False)
    assert isinstance(cached.image_store.remote, LocalStorage)
    assert cached.image_store.remote.root == tmp_path / "ac"
    log = io.StringIO()
    built = images.build_from_template(plain, REPO, "t", dockerfile, log)
    try:
        assert "stored" not in log.getvalue() and "artifact cache" not in log.getvalue()
    finally:
        _drop(docker_client, built.ref)


def test_images_travel_through_an_s3_artifact_cache(run_ctx, docker_client, dockerfile,
                                                    s3_server, server_bucket, tmp_path):
    from mxbuild.repo.target import S3Options, open_storage
    remote = open_storage(f"s3://{server_bucket}/ci-cache",
                          S3Options(endpoint_url=s3_server.endpoint, path_style=True))
    ctx = dataclasses.replace(run_ctx, image_store=ImageStore(remote, tmp_path / "transfer"))
    built = images.build_from_template(ctx, REPO, "t", dockerfile, io.StringIO())
    try:
        assert ctx.image_store.recorded_id(built.ref) == built.id
        _drop(docker_client, built.ref)
        log = io.StringIO()
        assert images.build_from_template(ctx, REPO, "t", dockerfile, log) == built
        assert "loaded" in log.getvalue() and "building" not in log.getvalue()
        assert not any((tmp_path / "transfer").iterdir())     # nothing left behind
    finally:
        _drop(docker_client, built.ref)
