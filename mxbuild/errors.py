"""One error hierarchy. Each class has its own exit code and says what to do.

The entry point (mxbuild.entry) is the only place that catches these; everything
else raises them with a message naming the problem and a hint naming the fix.
"""
from __future__ import annotations


class MxbuildError(Exception):
    exit_code = 1
    default_hint = ""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def render(self) -> str:
        text = f"error: {self.message}"
        if self.hint:
            text += f"\n  fix: {self.hint}"
        return text


class SelectionError(MxbuildError):
    """An unknown selector value or a selection that matches no cell."""
    exit_code = 2


class MatrixError(MxbuildError):
    """matrix.yaml does not follow the schema."""
    exit_code = 3

    def __init__(self, path: str, key_path: str, problem: str, expected: str):
        self.path, self.key_path = path, key_path
        super().__init__(
            f"{path}: {key_path or '<top level>'}: {problem}",
            f"expected {expected}",
        )


class ChecksumError(MxbuildError):
    """A downloaded or cached artefact does not match its pinned sha256."""
    exit_code = 4


class DockerEngineError(MxbuildError):
    """No Docker engine answers, or it refused a request."""
    exit_code = 5
    default_hint = (
        "start a Docker engine (as root: `invoke setup` installs docker.io and starts "
        "dockerd; otherwise `sudo systemctl start docker` or set DOCKER_HOST)"
    )


class StageError(MxbuildError):
    """A stage of a cell failed; names the cell, the stage and its log."""
    exit_code = 6

    def __init__(self, cell_id: str, stage: str, message: str, log_path=None, hint=None):
        self.cell_id, self.stage, self.log_path = cell_id, stage, log_path
        where = f" (log: {log_path})" if log_path else ""
        super().__init__(f"cell {cell_id}, stage {stage}: {message}{where}", hint)


class RepoError(MxbuildError):
    """The apt repository refused an operation or is inconsistent."""
    exit_code = 7


class PoolConflictError(RepoError):
    """A pool file exists with different content: never overwritten."""
    default_hint = (
        "a published file name must never change content: bump the packaging revision "
        "(matrix.yaml `revision`) so the new .deb gets a new version"
    )


class SigningError(MxbuildError):
    """The repository could not be signed (no usable key, an expired key, gpg failed)."""
    exit_code = 8
    default_hint = "check the signing key directory (MXBUILD_GNUPGHOME) and that gpg is installed"


class ImageError(MxbuildError):
    """A base image could not be made, pulled or verified."""
    exit_code = 9


class ConfigError(MxbuildError):
    """A setting (environment variable or flag) has an unusable value."""
    exit_code = 10


class DownloadError(MxbuildError):
    """A pinned artefact could not be downloaded (no route, HTTP error)."""
    exit_code = 11


class AbiError(MxbuildError):
    """A compiled library needs newer glibc/libstdc++ symbols than a target distro has."""
    exit_code = 12


class EmulationError(MxbuildError):
    """This host cannot run containers of a selected cell's architecture (no qemu-user
    registered in binfmt_misc with the fix-binary flag)."""
    exit_code = 13
