"""The one skip-or-fail rule of host requirements (tests/require.py)."""
import pytest

from ..require import REQUIRE, need_tools, required, skip_or_fail


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "True", " 1 "])
def test_1_or_true_make_it_required(monkeypatch, value):
    monkeypatch.setenv("MXBUILD_REQUIRE_TOOLS", value)
    assert required("tools")
    with pytest.raises(pytest.fail.Exception, match="gcc is missing .MXBUILD_REQUIRE_TOOLS"):
        skip_or_fail("tools", "gcc is missing")


@pytest.mark.parametrize("value", ["0", "false", "", "no", "yes", "2"])
def test_anything_else_skips(monkeypatch, value):
    monkeypatch.setenv("MXBUILD_REQUIRE_TOOLS", value)
    assert not required("tools")
    with pytest.raises(pytest.skip.Exception, match="^gcc is missing$"):
        skip_or_fail("tools", "gcc is missing")


def test_unset_skips_and_each_kind_has_its_variable(monkeypatch):
    for variable in REQUIRE.values():
        monkeypatch.delenv(variable, raising=False)
    assert REQUIRE == {"docker": "MXBUILD_REQUIRE_DOCKER", "tools": "MXBUILD_REQUIRE_TOOLS",
                       "s3_server": "MXBUILD_REQUIRE_S3_SERVER",
                       "emulation": "MXBUILD_REQUIRE_EMULATION"}
    assert not any(required(kind) for kind in REQUIRE)
    monkeypatch.setenv("MXBUILD_REQUIRE_DOCKER", "1")
    assert required("docker") and not required("tools")


def test_missing_tools_are_named(monkeypatch):
    monkeypatch.setenv("MXBUILD_REQUIRE_TOOLS", "1")
    need_tools("sh")                                     # present: nothing happens
    with pytest.raises(pytest.fail.Exception,
                       match=r"not installed: no-such-tool-1, no-such-tool-2 \(apt-get it\)"):
        need_tools("sh", "no-such-tool-1", "no-such-tool-2", hint="apt-get it")
