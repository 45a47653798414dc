"""mxbuild: build, package, publish and smoke-test Apache MXNet's native library."""
__version__ = "0.1.0"
