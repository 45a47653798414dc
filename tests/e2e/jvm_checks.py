"""Checks both JVM end-to-end tests make of a built libmxnet-scala .deb."""
import subprocess
from pathlib import Path


def assert_libmxnet_scala(deb: Path, version: str) -> None:
    """Depends on the exact libmxnet of its cell; the JNI library where OpenJDK looks."""
    fields = subprocess.run(["dpkg-deb", "-f", str(deb), "Depends"], capture_output=True,
                            text=True, check=True).stdout
    assert f"libmxnet (= {version})" in fields
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True,
                             check=True).stdout
    assert "./usr/lib/x86_64-linux-gnu/jni/libmxnet-scala.so" in listing
