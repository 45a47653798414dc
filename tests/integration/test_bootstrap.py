"""mxbuild.bootstrap against the real archive and engine: bookworm bootstrapped twice
into different work directories gives the same rootfs tar and the same image id."""
import io
import json

import pytest

from mxbuild import bootstrap
from mxbuild.containers import Container

EPOCH = 1704067200
TAG = "mxbuild/bootstrap-test:bookworm-{}"


@pytest.fixture
def tags(docker_client):
    made = [TAG.format(n) for n in (1, 2)]
    yield made
    for tag in made:
        if docker_client.images.list(name=tag):
            docker_client.images.remove(tag, force=True)


def test_bookworm_twice_gives_the_same_rootfs_and_image_id(docker_client, cpu_cell, test_opts,
                                                           tmp_path, tags):
    spec = cpu_cell.distro.base.bootstrap
    assert spec.suite == "bookworm" and bootstrap.tool_for(spec) == "mmdebstrap"
    results, logs = [], []
    for n, tag in enumerate(tags, 1):
        log = io.StringIO()
        # the project's cache: the second run (and later sessions) reuse the .debs
        results.append(bootstrap.bootstrap_image(
            docker_client, spec, tag, epoch=EPOCH, work=tmp_path / f"work{n}",
            cache_dir=test_opts.cache_dir, logf=log))
        logs.append(log.getvalue())
    first, second = results
    assert first.rootfs_sha256 == second.rootfs_sha256
    assert first.image_id == second.image_id
    assert first.packages == second.packages and bootstrap.package_drift(
        first.packages, second.packages) == []
    assert {"apt", "dpkg", "bash", "passwd", "debian-archive-keyring"} <= first.packages.keys()
    assert "seeded" in logs[1]                       # run 2 took the verified .debs
    assert "usrmerge" not in first.packages          # no perl: usr-is-merged instead

    image = docker_client.images.get(tags[1])
    assert image.id == first.image_id
    assert image.attrs["RootFS"]["Layers"] == [f"sha256:{first.rootfs_sha256}"]
    assert image.attrs["Created"].startswith("2024-01-01T00:00:00")
    assert image.attrs["Config"]["Env"] == ["LANG=C.UTF-8"]
    assert image.attrs["Config"]["Cmd"] == ["/bin/bash"]

    # the wrapper execs into a running container and reads the output before removing it
    # (docker-py's run(remove=True) may remove it first: docker/docker-py#2427)
    with Container(docker_client, tags[1], label="bootstrap-check") as box:
        out = box.run(["sh", "-c", (
            "cat /etc/apt/sources.list; readlink /bin; command -v useradd; "
            "dpkg-query -W -f '${Package}=${Version}\\n'")]).output.splitlines()
    assert out[0] == "deb http://deb.debian.org/debian bookworm main"
    assert out[1] == "usr/bin" and out[2].endswith("/useradd")
    inside = dict(line.split("=", 1) for line in out[3:])
    assert inside == first.packages
    json.dumps(first.packages)      # what a lock stores: plain strings


def test_a_key_that_did_not_sign_the_suite_is_refused(docker_client, cpu_cell, test_opts,
                                                      tmp_path, gnupg_stopped):
    """Only the pinned key is trusted: the host's /etc/apt/trusted.gpg.d (which holds the
    real Debian keys) must not rescue a wrong pin."""
    import dataclasses
    import subprocess
    from mxbuild.errors import ImageError
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--batch", "--homedir", str(home), "--pinentry-mode", "loopback",
           "--passphrase", ""]
    subprocess.run([*gpg, "--quick-gen-key", "not the archive <no@example.org>", "ed25519",
                    "sign", "1d"], check=True, capture_output=True)
    fpr = next(line.split(":")[9] for line in subprocess.run(
        [*gpg, "--with-colons", "--list-keys"], check=True, capture_output=True,
        text=True).stdout.splitlines() if line.startswith("fpr:"))
    ring = tmp_path / "wrong.gpg"
    ring.write_bytes(subprocess.run([*gpg, "--export", fpr], check=True,
                                    capture_output=True).stdout)
    spec = dataclasses.replace(cpu_cell.distro.base.bootstrap, keyring=str(ring),
                               key_fingerprint=fpr)
    log = io.StringIO()
    with pytest.raises(ImageError):
        bootstrap.bootstrap_rootfs(spec, tmp_path / "rootfs.tar", epoch=EPOCH,
                                   work=tmp_path / "work", cache_dir=test_opts.cache_dir,
                                   logf=log)
    assert "NO_PUBKEY" in log.getvalue() or "not signed" in log.getvalue(), log.getvalue()[-2000:]
    assert not (tmp_path / "rootfs.tar").exists()
