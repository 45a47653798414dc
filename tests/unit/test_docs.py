"""The documentation is checked like code: the site builds with `mkdocs build --strict`
(a broken link or a page missing from the nav fails), every `invoke …` line in docs/ and
README.md names a real task with real flags (the Jenkinsfile's check), the generated
reference pages equal what the code generates, and every flag of every task has help."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mxbuild import docsgen

from ..conftest import ROOT, task_flags
from ..require import skip_or_fail

DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md")) + [ROOT / "README.md"]


def _mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    try:
        import mkdocs  # noqa: F401
    except ImportError:
        skip_or_fail("tools", "mkdocs is not installed (./setup.sh installs the `docs` extra)")
    # not --quiet: it hides the warnings, and --strict then passes a broken link
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                           "-f", str(config), "-d", str(site)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


@pytest.mark.seconds
def test_the_site_builds_strictly(tmp_path):
    run = _mkdocs_build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "site/reference/tasks/index.html").is_file()
    # the check really checks: the same configuration on a one-page site with a broken
    # link fails (one page: a second build of the whole site costs seconds)
    import yaml
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.UnsafeLoader)
    copy = tmp_path / "copy"
    (copy / "docs").mkdir(parents=True)
    (copy / "docs/index.md").write_text("# Home\n\nSee [nowhere](no-such-page.md).\n")
    (copy / "mkdocs.yml").write_text(yaml.dump({**config, "nav": [{"Home": "index.md"}]}))
    broken = _mkdocs_build(copy / "mkdocs.yml", tmp_path / "site2")
    assert broken.returncode != 0 and "no-such-page.md" in broken.stderr, broken.stderr
    (copy / "docs/index.md").write_text("# Home\n")
    assert _mkdocs_build(copy / "mkdocs.yml", tmp_path / "site3").returncode == 0


def test_every_page_is_in_the_nav():
    import yaml
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.UnsafeLoader)

    def leaves(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            for v in node.values():
                yield from leaves(v)
        elif isinstance(node, list):
            for v in node:
                yield from leaves(v)
    in_nav = set(leaves(config["nav"]))
    on_disk = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert on_disk == in_nav


# ---------------------------------------------------------------- invoke lines

INVOKE = re.compile(r"(?:^|[\s/(`])invoke ([a-z][\w.-]*)([^`#\n]*)")


def invoke_lines(text: str) -> list[tuple[str, str]]:
    """(task, rest of the line) of every `invoke TASK …` in fenced code blocks and in inline
    code spans of a Markdown page."""
    found, fence = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
            continue
        spans = [line] if fence else re.findall(r"`([^`]+)`", line)
        for span in spans:
            for task, rest in INVOKE.findall(span):
                found.append((task, rest.split(" && ")[0].split(" | ")[0]))
    return found


def test_the_extraction_finds_lines_in_code_blocks_and_spans():
    text = ("```sh\n.venv/bin/invoke build --cell x --jobs 2   # --not-a-flag\n```\n"
            "Run `invoke repo.clean --apply` or `invoke doctor`; invoke prose is not code.\n")
    assert invoke_lines(text) == [("build", " --cell x --jobs 2   "),
                                  ("repo.clean", " --apply"), ("doctor", "")]


def test_every_invoke_line_in_the_docs_names_a_real_task_and_real_flags():
    checked = 0
    for page in PAGES:
        for task, rest in invoke_lines(page.read_text()):
            where = f"{page.relative_to(ROOT)}: invoke {task}{rest}"
            flags = task_flags(task)          # asserts the task exists
            used = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest))
            assert used <= flags, f"{where}: unknown {sorted(used - flags)}"
            checked += 1
    assert checked > 100, checked


def test_a_wrong_flag_in_a_docs_line_is_found():
    (task, rest), = invoke_lines("`invoke build --no-such-flag`")
    assert "--no-such-flag" not in task_flags(task)


# ---------------------------------------------------------------- generated pages

def test_the_generated_reference_pages_equal_the_code():
    for rel, text in docsgen.pages(ROOT).items():
        committed = (ROOT / rel).read_text()
        assert committed == text, f"{rel} differs from the code: run `.venv/bin/invoke docs`"


def test_the_task_reference_lists_every_task_and_flag():
    page = (ROOT / docsgen.TASKS_PAGE).read_text()
    for name, task in docsgen.iter_tasks(docsgen.load_tasks(ROOT)):
        section = page.split(f"## `invoke {name}`\n", 1)[1].split("\n## ", 1)[0]
        for arg in task.get_arguments():
            assert f"--{arg.names[0]}" in section or f"--[no-]{arg.names[0]}" in section


def test_the_matrix_reference_is_what_the_schema_checks():
    mappings = docsgen.matrix_mappings(ROOT)
    assert {"", "distros.<distro>", "distros.<distro>.base.bootstrap",
            "variants.<variant>.builds[]", "upstream_tests.<mxnet version>.files[]"} \
        <= set(mappings)
    top = mappings[""]
    assert {"schema", "distros", "variants"} <= set(top.required)
    assert "upstream_tests" in top.optional


# ---------------------------------------------------------------- task help

def test_every_flag_of_every_task_has_help():
    missing = [f"invoke {name} --{arg.names[0]}"
               for name, task in docsgen.iter_tasks(docsgen.load_tasks(ROOT))
               for arg in task.get_arguments() if not (arg.help or "").strip()]
    assert not missing, f"flags without help (tasks.py @task(help=…)): {missing}"
    undocumented = [name for name, task in docsgen.iter_tasks(docsgen.load_tasks(ROOT))
                    if not (task.__doc__ or "").strip()]
    assert not undocumented


# ---------------------------------------------------------------- README

def test_the_readme_is_short_and_its_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not target.startswith(("http://", "https://")):
            assert (ROOT / target).exists(), f"README links to {target}: no such file"
    # the two set-up commands, unchanged
    assert "./setup.sh && .venv/bin/invoke build --variant cpu --distro debian12" in text
    assert "./setup.sh && .venv/bin/pytest" in text
    assert shlex.split("sudo apt-get install libmxnet")[-1] in text


# ---------------------------------------------------------------- the report's picture

def test_the_screenshot_command_renders_a_report_and_refuses_a_missing_one(tmp_path):
    """`invoke docs --screenshot` in a real headless Chromium, on a small page of the
    report's kind (a green cell); a report that is not there is a settings error."""
    import pytest
    from mxbuild.errors import ConfigError
    from tests.require import need_tools
    from PIL import Image
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        need_tools("chromium", hint="./setup.sh installs it")
    html = tmp_path / "report.html"
    html.write_text('<html><body style="margin:0;background:#c8e6c9">ok</body></html>')
    png = docsgen.screenshot(html, tmp_path / "shot.png", width=320, height=200)
    image = Image.open(png).convert("RGB")
    assert image.size == (320, 200) and image.getpixel((300, 190)) == (0xc8, 0xe6, 0xc9)
    assert png.stat().st_size < docsgen.SCREENSHOT_LIMIT
    with pytest.raises(ConfigError, match="no such report"):
        docsgen.screenshot(tmp_path / "nothing.html", tmp_path / "x.png")


def test_pictures_are_small_and_shown():
    pages = "\n".join(p.read_text() for p in PAGES)
    for picture in (DOCS / "images").glob("*"):
        assert picture.stat().st_size < docsgen.SCREENSHOT_LIMIT, picture
        assert f"images/{picture.name}" in pages, f"{picture} is on no page"
