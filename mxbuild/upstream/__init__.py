"""MXNet's own tests as a stage of cells whose libmxnet.so is built from source (README
"Upstream tests"): stage.py runs them; the other modules are its parts."""
