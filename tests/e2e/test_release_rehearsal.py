"""Release day, rehearsed in CI (the small form of bench/release_rehearsal.py): the
Jenkinsfile's own steps for two CPU cells on two agents that start empty (own checkout,
own Docker engine with no images, empty caches), sharing the artifact cache and the apt
repository on SeaweedFS; the .debs travel by stash; staging only after the smoke; promote
and verify; then a container of each distro installs the promoted packages over http from
SeaweedFS. Needs root (a second dockerd), groovy and SeaweedFS."""
import os

import pytest

from tests import release_rehearsal as rr
from tests.docker_engines import can_start

CELLS = ("1.9.1-cpu-debian11", "1.9.1-cpu-debian12")


@pytest.fixture(scope="module")
def outcome(tmp_path_factory, docker_client):
    why = can_start()
    if why:
        if os.environ.get("MXBUILD_REQUIRE_DOCKER"):
            pytest.fail(f"the rehearsal's agents cannot start: {why}")
        pytest.skip(why)
    try:
        from tests import s3servers
        s3servers.seaweedfs_binary()
    except RuntimeError as exc:
        if os.environ.get("MXBUILD_REQUIRE_S3_SERVER"):
            pytest.fail(str(exc))
        pytest.skip(f"SeaweedFS is not available: {exc}")
    work = tmp_path_factory.mktemp("rehearsal")
    result = rr.rehearse(rr.Plan("1.9.1-cpu-debian1{1,2}"), work)
    print(rr.report(result))
    return result


def test_the_pipeline_passes_on_two_empty_agents(outcome):
    assert outcome.sim.result == "SUCCESS", outcome.sim.error
    stages = {r["stage"].split(" / ")[-1]: r for r in outcome.steps}
    for cell in CELLS:
        build, smoke, staging = (stages[f"{cell}: {step}"] for step in ("build", "smoke",
                                                                         "staging"))
        assert build["ran"] == ["image", "recipe", "package"] and not build["failed"]
        assert "smoke" in smoke["ran"] + smoke["reused"] and not smoke["failed"]
        # the .debs travelled: the smoke ran on the other agent, from the unstashed files
        assert smoke["agent"] != build["agent"] and smoke["stash_bytes"] > 1_000_000
        # that agent's engine had none of this distro's images: base and runtime image
        # came from the artifact cache the build agent filled (it makes the smoke client
        # image on top of them)
        assert smoke["images"]["loaded"]
        assert all(i.startswith("mxbuild/smoke-client:") for i in smoke["images"]["built"])
        assert build["images"]["built"] and build["images"]["stored"]
        assert staging["agent"] != smoke["agent"]
    order = [e.get("command", "") for e in outcome.sim.events]
    for cell in CELLS:
        smoke, staging, promote = (
            next(i for i, c in enumerate(order) if f"invoke {task} --cell '{cell}'" in c)
            for task in ("smoke", "publish", "repo.promote"))
        assert smoke < staging < promote
    verify = [e for e in outcome.sim.of("sh") if "invoke repo.verify" in e["command"]]
    assert [e["exit"] for e in verify] == [0]


def test_the_promoted_suites_hold_both_cells(outcome):
    listing = outcome.listing
    for suite in ("bullseye", "bookworm"):
        assert [p for p, _ in listing[suite]["cpu"]] == ["libmxnet"]
        assert listing[suite]["cpu"] == listing[f"{suite}-staging"]["cpu"]


def test_hosts_of_each_distro_install_from_s3(outcome):
    assert sorted(h["cell"] for h in outcome.hosts) == list(CELLS)
    for host in outcome.hosts:
        assert host["ok"], host
        assert "libmxnet 1.9.1-" in host["output"] and "libmxnet.so" in host["output"]


def test_the_shared_stores_hold_what_the_agents_exchanged(outcome):
    repo_bytes, repo_objects = outcome.sizes["repository"]
    cache_bytes, cache_objects = outcome.sizes["artifact cache"]
    assert repo_objects > 10 and repo_bytes > 2 * 20_000_000      # two .debs at least
    assert cache_bytes > 200_000_000                              # images and stage outputs
