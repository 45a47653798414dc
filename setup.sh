#!/usr/bin/env bash
# Set up everything mxbuild needs on a fresh Debian/Ubuntu machine:
# host tools (as root), a virtualenv with mxbuild and its test tools, a Docker engine.
set -euo pipefail
cd "$(dirname "$0")"

# mmdebstrap (and its Recommends: the bootstrap was measured with them) and debootstrap
# (xenial; mmdebstrap's merged-/usr hook) + the archive keyring make base images;
# gpg signs the repository;
# dpkg-deb and gcc build test fixtures; chromium screenshots the HTML report and groovy
# checks the Jenkinsfile, openssl makes the S3 server's test certificate, a JDK and Maven
# build the JVM fixtures (tests/fixtures/jvm-standin, examples/jvm-predictor), libdnnl-dev
# (oneDNN) reproduces the Deconvolution defect the compile recipe works around (tests only).
# Everything else runs inside containers. The tests' S3 server (SeaweedFS) is built by
# .ci/seaweedfs.sh with the Go toolchain (Go >= 1.26).
host_packages=(mmdebstrap arch-test fakechroot fakeroot libdistro-info-perl uidmap mount
               debootstrap debian-archive-keyring gnupg gpgv dpkg-dev xz-utils gcc libc6-dev
               python3-venv ca-certificates chromium groovy default-jre-headless openssl
               default-jdk-headless maven libdnnl-dev)
missing=()
for p in "${host_packages[@]}"; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup.sh: missing host packages: ${missing[*]}" >&2
        echo "  fix: sudo apt-get install -y ${missing[*]}  (then re-run ./setup.sh)" >&2
        exit 1
    fi
    echo "setup.sh: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "setup.sh: mxbuild needs Python >= 3.11 (found $(python3 -V))" >&2; exit 1; }
[ -x .venv/bin/python ] || python3 -m venv .venv
# mxbuild is installed editable: only a changed pyproject.toml (dependencies, entry points)
# needs pip again. CI agents run this script before every step.
stamp=.venv/.mxbuild-pyproject.sha256
if ! sha256sum --status -c "$stamp" 2>/dev/null; then
    .venv/bin/pip install --quiet --disable-pip-version-check -e '.[test,docs]'
    sha256sum pyproject.toml > "$stamp"
fi

# A Docker engine: reuse one that answers; as root install docker.io and start dockerd.
.venv/bin/invoke setup
