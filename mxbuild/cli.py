"""What each task does, with flags already parsed (tasks.py only wires flags to these)."""
from __future__ import annotations

import dataclasses
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from . import (client as thin_client, deb, engine, matrix as matrix_mod, options, pipeline,
               recipes, smoke, thin)
from .context import open_run
from .errors import ConfigError, RepoError, SelectionError
from .log import console, log
from .repo import cdn, keys, mirror as mirror_mod, ops, private, retention
from .repo.publish import Upload, publish as publish_debs
from .repo.sign import Signer, keyring_keys
from .repo.target import S3Options, open_storage, public_url


@dataclass(frozen=True)
class Selectors:
    variant: str | None = None
    cuda: str | None = None
    distro: str | None = None
    mxnet: str | None = None
    cell: str | None = None
    arch: str | None = None     # None: the primary architecture only; "all": every one


@dataclass(frozen=True)
class RepoArgs:
    location: str | None        # s3://BUCKET/PREFIX, a directory, or None: out/repo
    s3: S3Options = S3Options()
    keyring: str | None = None  # verify against this public keyring file


def _cells(opts: options.Options, sel: Selectors, recipe: str | None = None):
    """The selected cells; with `recipe`, each as that recipe builds it (it may ship more
    of the matrix's packages than the matrix's build does)."""
    m = matrix_mod.load(opts.matrix_path)
    cells = m.select(variant=sel.variant, cuda=sel.cuda, distro=sel.distro, mxnet=sel.mxnet,
                     cell=sel.cell, arch=sel.arch)
    if recipe:
        cells = [recipes.with_recipe(cell, recipe, m.packages) for cell in cells]
    return cells


def _print_table(title: str, columns: list[str], rows) -> None:
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*("-" if v is None else str(v) for v in row))
    Console(width=max(console.width, 140)).print(table)


def show_matrix(sel: Selectors, as_json: bool) -> None:
    """The selected cells; a listing shows every architecture unless --arch narrows it."""
    opts = options.resolve()
    cells = _cells(opts, sel if sel.arch else dataclasses.replace(sel, arch="all"))
    if as_json:
        print(json.dumps([c.summary() for c in cells], indent=2))
        return
    cols = ["id", "mxnet", "variant", "cuda", "distro", "codename", "arch", "recipe",
            "version"]
    _print_table(f"{len(cells)} cell(s) from {opts.matrix_path.name}", cols,
                 ([c.summary()[k] for k in cols] for c in cells))


def setup() -> None:
    engine.ensure(install=True)
    log.info("Docker engine is up")
    from . import emulation
    m = matrix_mod.load(options.resolve().matrix_path)
    for arch in m.architectures.values():
        if emulation.native(arch):
            continue
        got = emulation.prepare(arch)
        if got.ok:
            log.info("%s containers run here: %s", arch.name, got.detail)
        else:   # amd64 cells do not need it: say so, do not fail
            log.warning("%s containers cannot run here (%s cells cannot be bootstrapped or "
                        "smoke-tested): %s; fix: %s", arch.name, arch.name, got.detail, got.fix)


def lock_targets(m, distro: str | None, arch: str | None) -> list[tuple]:
    """(distro, architecture) pairs `invoke lock` records: the given distros (default:
    every distro for the primary architecture, the distros its cells use for another one)
    for the given architectures (default: the primary one; `all`: every one)."""
    names = [d.strip() for d in (distro or "").split(",") if d.strip()]
    unknown = [n for n in names if n not in m.distros]
    if unknown:
        raise SelectionError(f"--distro {', '.join(unknown)}: not in matrix.yaml",
                             "use one of: " + ", ".join(m.distros))
    wanted = [a.strip() for a in (arch or "").split(",") if a.strip()]
    primary = next(a for a in m.architectures.values() if a.primary)
    if not wanted:
        arches = [primary]
    elif wanted == ["all"]:
        arches = list(m.architectures.values())
    else:
        bad = [a for a in wanted if a not in m.architectures]
        if bad:
            raise SelectionError(f"--arch {', '.join(bad)}: not an architecture of matrix.yaml",
                                 "use one of: " + ", ".join(m.architectures) + ", or all")
        arches = [m.architectures[a] for a in wanted]
    out = []
    for a in arches:
        used = [n for n in m.distros if a.primary or any(
            c.distro.name == n and c.arch.name == a.name for c in m.cells)]
        out += [(m.distros[n], a) for n in (names or used)]
    return out


def lock(distro: str | None, arch: str | None = None) -> None:
    """Record in pins.lock what the selected distros' bases and the CUDA toolkit images of
    their compile cells are now: the one writer of pins.lock (builds only verify against
    it). Another architecture's bases are keyed <distro>-<arch>; the primary architecture's
    entries stay what they are."""
    from . import emulation, images
    from .bootstrap import package_drift
    from .pins import Pins
    opts = options.resolve()
    m = matrix_mod.load(opts.matrix_path)
    targets = lock_targets(m, distro, arch)
    foreign = [a for _, a in targets if not emulation.native(a)]
    if foreign:    # mmdebstrap runs the maintainer scripts of foreign packages under qemu
        emulation.require(foreign, why="bootstrapping their base images")
    ctx = open_run(opts, docker=engine.client(), gpu=False)
    pins = Pins.load(opts.pins_path)
    for dist, a in targets:
        image_arch = None if a.primary else a
        name = images.pin_name(dist, image_arch)
        log_path = opts.logs_dir / "lock" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "w") as logf:
            entry = images.lock_entry(ctx, dist, logf, image_arch)
        old = pins.base(name) or {}
        changes = package_drift(old.get("packages", {}), entry.get("packages", {}))
        same = {k: v for k, v in old.items() if k != "packages"} == \
            {k: v for k, v in entry.items() if k != "packages"} and not changes
        pins = pins.with_base(name, entry)
        detail = entry.get("id") or entry.get("digest")
        console.print(f"= {name}: {detail} (unchanged)" if same else
                      f"[green]✓[/] {name}: {detail}" + (f" — {len(changes)} package(s) "
                                                        f"changed: {'; '.join(changes[:8])}"
                                                        if old and changes else ""))
    # the CUDA toolkit images the selected distros' compile cells build FROM
    chosen = {(d.name, a.name) for d, a in targets}
    toolkits = images.toolkit_images(c for c in m.cells
                                     if (c.distro.name, c.arch.name) in chosen)
    pins, news = images.lock_toolkits(pins, toolkits, lambda image: images.registry_digest(
        ctx.docker, image, "`docker load` it, then run `invoke lock` again"))
    for line in news:
        console.print(line)
    pins.write()
    console.print(f"wrote {opts.pins_path}")


@dataclass(frozen=True)
class RecipeArgs:
    recipe: str | None = None          # override the matrix's recipe for every cell
    source_tarball: str | None = None
    source_dir: str | None = None


def forced_stages(force: bool, force_stage: str | None) -> frozenset[str]:
    names = frozenset(s.strip() for s in (force_stage or "").split(",") if s.strip())
    unknown = names - set(pipeline.STAGES)
    if unknown:
        raise ConfigError(f"--force-stage {', '.join(sorted(unknown))}: no such stage",
                          "one or more of " + ", ".join(pipeline.STAGES))
    return names | ({"all"} if force else set())


# params: one per `invoke build` flag (tasks.py passes them through)
def build(sel: Selectors, publish: str | None, run_smoke: bool, ca_bundle: str | None,
          s3: S3Options, recipe: RecipeArgs = RecipeArgs(), staging: bool = False,
          force: frozenset[str] = frozenset(), jobs: int = 1,
          artifact_cache: str | None = None) -> None:
    opts = dataclasses.replace(_with_artifact_cache(options.resolve(
        ca_bundle=ca_bundle, source_tarball=recipe.source_tarball,
        source_dir=recipe.source_dir), artifact_cache, s3), staging=staging, force=force)
    if (recipe.source_tarball or recipe.source_dir) and not (
            recipe.recipe and recipes.get(recipe.recipe).takes_source):
        takers = [n for n in recipes.names() if recipes.get(n).takes_source]
        raise ConfigError("--source-tarball/--source-dir apply only to a recipe that builds "
                          f"from source ({', '.join(takers)})",
                          f"add --recipe {takers[0]}" if takers else "drop the flag")
    cells = _cells(opts, sel, recipe.recipe)
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}", "give a positive number of cells to run at once")
    if publish == "none":
        pipeline.build(cells, opts, storage=None, do_smoke=False, jobs=jobs)
        return
    storage = open_storage(publish or opts.repo_dir, s3)
    with cdn.invalidating(storage):
        pipeline.build(cells, opts, storage=storage, do_smoke=run_smoke, jobs=jobs)


def _with_artifact_cache(opts: options.Options, location: str | None,
                         s3: S3Options) -> options.Options:
    """--artifact-cache (else MXBUILD_ARTIFACT_CACHE), reached with the run's S3 flags."""
    # the cache is read by builders, never through the CDN: nothing to invalidate
    return dataclasses.replace(opts, artifact_cache=location or opts.artifact_cache,
                               artifact_s3=dataclasses.replace(s3, cdn_distribution=None))


# params: one per `invoke plan` flag, the same as build's
def show_plan(sel: Selectors, publish: str | None, run_smoke: bool, s3: S3Options,
              recipe: RecipeArgs = RecipeArgs(), as_json: bool = False,
              artifact_cache: str | None = None, staging: bool = False) -> None:
    """What `build` with the same flags would do, stage by stage, without doing it."""
    from . import plan as plan_mod
    opts = dataclasses.replace(_with_artifact_cache(options.resolve(
        source_tarball=recipe.source_tarball, source_dir=recipe.source_dir),
        artifact_cache, s3), staging=staging)
    cells = _cells(opts, sel, recipe.recipe)
    storage = None if publish == "none" else open_storage(publish or opts.repo_dir, s3)
    keyring = Signer(opts.gnupg_home).existing_public_keyring() if storage else None
    ctx = open_run(opts, docker=plan_mod.engine_or_none(), storage=storage)
    steps = plan_mod.plan(cells, ctx, keyring=keyring, do_smoke=run_smoke)
    if as_json:
        print(json.dumps([s.__dict__ for s in steps], indent=2))
        return
    colour = {"build": "yellow", "load": "blue", "run": "cyan", "reuse": "green", "skip": "dim",
              "fail": "red"}
    _print_table(f"plan for {len(cells)} cell(s)", ["cell", "stage", "action", "why"],
                 ((s.cell, s.stage, f"[{colour[s.action]}]{s.action}[/]", s.reason)
                  for s in steps))


def doctor(repo: RepoArgs) -> None:
    from . import doctor as doctor_mod
    opts = options.resolve()
    location = repo.location or "http://127.0.0.1:8080"
    url = location
    if location.startswith("s3://"):
        url = public_url(open_storage(location, repo.s3))
    elif not re.match(r"^https?://", location):
        raise ConfigError(f"--repo {location!r} is not a URL apt can read",
                          "give http(s)://… or s3://BUCKET/PREFIX")
    d = doctor_mod.diagnose(matrix_mod.load(opts.matrix_path), url,
                            disk_paths=(opts.out_dir, opts.cache_dir))
    mark = {True: "[green]✓[/]", False: "[red]✗[/]", None: "[dim]–[/]"}
    for name, ok, detail in d.checks:
        console.print(f"{mark[ok]} {name:<18} {detail}")
    if d.commands:
        console.print(f"\nTo install {d.cell.package.name} from {url}:")
        for command in d.commands:
            console.print(f"  {command}", markup=False, highlight=False)
    if d.cell is not None and location.startswith("s3://"):
        storage = open_storage(location, repo.s3)
        console.print(f"\nFrom a private bucket (no anonymous read; {private.TRANSPORT} "
                      "with an instance role or keys in a root-only file):")
        for command in private.commands(storage.target, d.cell.codename, d.cell.component,
                                        d.cell.package.name, repo.s3.region):
            console.print(f"  {command}", markup=False, highlight=False)


def publish(sel: Selectors, repo: RepoArgs, staging: bool = False) -> None:
    """Publish the already built .debs of the selected cells, and the thin client of each
    of their MXNet versions."""
    opts = options.resolve()
    if not repo.location:
        raise ConfigError("--to is required", "give s3://BUCKET/PREFIX or a directory")
    cells = _cells(opts, sel)
    uploads = [Upload(built.path, cell.suite(staging), cell.component, cell.id)
               for cell in cells
               for built in deb.built_debs(opts.out_dir / "debs" / cell.id, cell)]
    storage = open_storage(repo.location, repo.s3)
    ctx = open_run(opts, storage=storage, gpu=False)
    clients = {c.path: c for cell in cells
               for c in thin.for_cell(ctx, cell, opts.out_dir / "debs" / cell.id)}
    with cdn.invalidating(storage):
        for client in sorted(clients.values(), key=lambda c: c.path.name):  # clients first
            changed = thin.get(client.kind).publish(storage, client)
            console.print(f"{'[green]✓[/] published' if changed else '='} {client.path.name}")
        result = publish_debs(storage, Signer(opts.gnupg_home), uploads)
    for line in result.added:
        console.print(f"[green]✓[/] published {line} to {storage.describe()}")
    for line in result.skipped:
        console.print(f"= {line} ({storage.describe()})")


def thin_clients(sel: Selectors, repo: RepoArgs) -> None:
    """Build the mxnet-thin wheel of each selected MXNet version and publish it to the
    repository's PEP 503 index (`repo.location`: default out/repo; 'none': build only)."""
    opts = options.resolve()
    cells = _cells(opts, sel)
    first = {}
    for cell in cells:                      # one thin wheel per MXNet version
        first.setdefault(cell.mxnet, cell)
    storage = None if repo.location == "none" else _repo(repo, opts)
    with cdn.invalidating(storage):
        for version, cell in sorted(first.items()):
            wheel = thin_client.thin_wheel_for(cell, opts)
            console.print(f"{wheel} ({wheel.stat().st_size / 1e6:.1f} MB, from "
                          f"{(cell.client_wheel or cell.official_wheel).filename})")
            if storage is not None:
                changed = thin_client.publish_thin(storage, wheel)
                console.print(f"{'[green]✓[/] published' if changed else '= already in'} "
                              f"{storage.describe()}/simple/{thin_client.THIN_NAME}/")


def smoke_built(sel: Selectors, repo: RepoArgs, staging: bool, ca_bundle: str | None,
                jobs: int = 1, artifact_cache: str | None = None) -> None:
    opts = dataclasses.replace(_with_artifact_cache(options.resolve(ca_bundle=ca_bundle),
                                                    artifact_cache, repo.s3), staging=staging)
    storage = open_storage(repo.location or opts.out_dir / "smoke-repo", repo.s3)
    with cdn.invalidating(storage):
        pipeline.smoke_built(_cells(opts, sel), opts, storage, jobs=jobs)


def repo_promote(sel: Selectors, repo: RepoArgs) -> None:
    """Copy the selected cells' versions from <codename>-staging to <codename>."""
    opts = options.resolve()
    storage = _repo(repo, opts)
    signer = Signer(opts.gnupg_home)
    with cdn.invalidating(storage):
        for cell in _cells(opts, sel):
            added = ops.promote(storage, signer, cell.codename, cell.component,
                                cell.package_names, cell.deb_version, cell.arch.name)
            what = (f"{', '.join(cell.package_names)} {cell.deb_version} ({cell.arch.name}) "
                    f"{cell.suite(True)} → {cell.codename}")
            console.print(f"[green]✓[/] promoted {what}" if added else
                          f"= {what}: already there")


def _repo(repo: RepoArgs, opts: options.Options):
    return open_storage(repo.location or opts.repo_dir, repo.s3)


def _keyring(repo: RepoArgs, opts: options.Options) -> bytes:
    if repo.keyring:
        path = Path(repo.keyring)
        if not path.is_file():
            raise ConfigError(f"keyring {path} does not exist", "give the repository's public "
                              "keyring (mxbuild-archive-keyring.gpg)")
        keyring_keys(path.read_bytes(), str(path))     # SigningError if it is no keyring
        return path.read_bytes()
    ring = Signer(opts.gnupg_home).existing_public_keyring()
    if ring is None:
        raise ConfigError(f"no signing key in {opts.gnupg_home} to verify against",
                          "pass --keyring with the repository's public keyring")
    return ring


def repo_list(repo: RepoArgs, as_json: bool) -> None:
    opts = options.resolve()
    storage = _repo(repo, opts)
    listing = ops.list_repo(storage, _keyring(repo, opts))
    maven = [(f"{c.group_id}:{c.artifact_id}", c.version) for c in listing.artifacts]
    if as_json:   # the Maven repository under its own key, when there is one
        print(json.dumps({**listing.suites, **({"maven": [f"{a}:{v}" for a, v in maven]}
                                               if maven else {})}, indent=2))
        return
    _print_table(storage.describe(), ["suite", "component", "package", "version", "arch"],
                 [(*row, " ".join(listing.arches[row])) for row in listing.rows()]
                 + [("maven", "-", a, v, "all") for a, v in maven])


def repo_verify(repo: RepoArgs) -> None:
    opts = options.resolve()
    storage = _repo(repo, opts)
    notes: list[str] = []
    problems = ops.verify(storage, _keyring(repo, opts), notes)
    for note in notes:
        console.print(f"  {note}", markup=False)
    if problems:
        for p in problems:
            console.print(f"[red]✗[/] {p}", markup=True)
        raise RepoError(f"{storage.describe()}: {len(problems)} problem(s)",
                        "re-run the interrupted publish, or restore the named files")
    console.print(f"[green]✓[/] {storage.describe()}: every index, hash and signature checks out")


def repo_remove(repo: RepoArgs, suite: str, component: str, package: str, version: str,
                arch: str | None = None) -> None:
    """Remove a version of one architecture, or (arch None) of every one it has."""
    opts = options.resolve()
    storage = _repo(repo, opts)
    with cdn.invalidating(storage):
        removed = ops.remove(storage, Signer(opts.gnupg_home), suite, component, package,
                             version, arch)
    for line in removed:
        console.print(f"[green]✓[/] removed {line} (its pool file goes with `repo.clean`)")


def parse_duration(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", str(text).strip())
    if not m:
        raise ConfigError(f"duration {text!r} is malformed", "write e.g. 90s, 30m, 24h or 7d")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def repo_rotate_key(repo: RepoArgs, new_key: str | None, retire: str | None) -> None:
    """Start a signing-key rotation (old + new key sign) or end it (--retire OLD)."""
    opts = options.resolve()
    storage = _repo(repo, opts)
    with cdn.invalidating(storage):
        _rotate_key(storage, opts, new_key, retire)


def _rotate_key(storage, opts: options.Options, new_key: str | None,
                retire: str | None) -> None:
    signer = Signer(opts.gnupg_home)
    if retire and new_key:
        raise ConfigError("--new-key and --retire together", "rotate first, retire later: "
                          "hosts need the time in between to fetch the new keyring")
    if retire:
        done = keys.retire(storage, signer, retire)
        console.print(f"[green]✓[/] retired {retire}: {', '.join(done) or 'no suite'} re-signed "
                      f"without it; {storage.describe()}/{keys.KEYRING_NAME} no longer holds it")
        return
    fpr, done = keys.rotate(storage, signer, new_key)
    console.print(f"[green]✓[/] {fpr} now signs {storage.describe()} beside the old key(s): "
                  f"{', '.join(done) or 'no suite'} re-signed by both")
    console.print(f"  hosts: install the new {keys.KEYRING_NAME} (it holds both keys); then "
                  "`invoke repo.rotate-key --retire OLD-FINGERPRINT`", markup=False)


def repo_mirror(source: RepoArgs, dest: RepoArgs, name: str | None, workers: int) -> None:
    """Copy source to dest in Debian's order (mirror.py), print what it did."""
    opts = options.resolve()
    if not source.location or not dest.location:
        raise ConfigError("repo.mirror needs both --from and --to",
                          "e.g. invoke repo.mirror --from s3://A/apt --to s3://B/apt")
    if workers < 1:
        raise ConfigError(f"--workers {workers} is not a positive number", "give 1 or more")
    src, dst = _repo(source, opts), _repo(dest, opts)
    result = mirror_mod.mirror(src, dst, _keyring(source, opts),
                               mirror_mod.MirrorOptions(name=name or "", workers=workers))
    for suite, sha in sorted(result.suites.items()):
        console.print(f"[green]✓[/] {suite}: InRelease sha256 {sha}")
    console.print(f"{dst.describe()}: {len(result.copied)} object(s) written "
                  f"({result.bytes_copied} bytes), {len(result.deleted)} deleted, "
                  f"{len(result.kept)} unreferenced kept until the source's repo.clean")
    if result.skipped:
        for why in result.skipped:
            console.print(f"[yellow]![/] skipped {why}", markup=True)
        raise RepoError(f"{len(result.skipped)} suite(s) of {src.describe()} were not mirrored "
                        "(the mirror keeps their previous state)",
                        "re-run once the publish on the source has finished")


def repo_clean(repo: RepoArgs, grace: str, apply: bool, keep: str | None = None) -> None:
    """Drop versions beyond --keep (a commit per suite), then delete the garbage."""
    opts = options.resolve()
    storage = _repo(repo, opts)
    with cdn.invalidating(storage):
        _clean(storage, repo, opts, grace, apply, keep)


def _clean(storage, repo: RepoArgs, opts: options.Options, grace: str, apply: bool,
           keep: str | None) -> None:
    if keep is not None:
        count = retention.parse_keep(keep)
        drops = retention.plan(storage, _keyring(repo, opts), count)
        for d in drops:
            console.print(f"{'dropping' if apply else 'would drop'} {d.package} {d.version} "
                          f"from {d.suite}/{d.component} (--keep {count})")
        if apply and drops:
            retention.apply(storage, Signer(opts.gnupg_home), count)
        if drops:
            console.print(f"{len(drops)} version(s) beyond the newest {count}: their pool files "
                          f"go once no suite lists them, {grace} after the drop")
    found = ops.garbage(storage, _keyring(repo, opts), parse_duration(grace))
    for g in found:
        if g.retained_until is not None:
            until = ("a legal hold" if g.retained_until == float("inf") else
                     time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(g.retained_until)))
            console.print(f"keeping {g.key} ({g.why}): S3 Object Lock retains it until {until}")
            continue
        verb = "deleting" if apply else "would delete"
        console.print(f"{verb} {g.key} ({g.size} bytes, {g.age_seconds / 3600:.1f} h old, {g.why})")
    if apply:
        ops.delete_garbage(storage, found)
    deletable = [g for g in found if g.retained_until is None]
    total = sum(g.size for g in deletable)
    console.print(f"{len(deletable)} object(s), {total} bytes"
                  + ("" if apply else " — dry run; add --apply to delete"))


def serve(port: int) -> None:
    opts = options.resolve()
    with smoke.serve_directory(opts.repo_dir, host="127.0.0.1", port=port) as url:
        console.print(f"serving {opts.repo_dir} at {url} (Ctrl-C stops)")
        while True:
            time.sleep(3600)


def docs(screenshot: str | None) -> None:
    from . import docsgen
    root = docsgen.ROOT
    for rel in docsgen.write(root):
        log.info("wrote %s", rel)
    if screenshot:
        png = docsgen.screenshot(Path(screenshot), root / docsgen.SCREENSHOT)
        log.info("wrote %s (%.0f kB): commit it only if it shows a real run",
                 png.relative_to(root), png.stat().st_size / 1000)
