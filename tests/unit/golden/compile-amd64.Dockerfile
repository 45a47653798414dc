# Compile image for debian12 (bookworm): MXNet's build dependencies
# on the cell's build image.
FROM mxbuild/build:debian12-0123456789ab
LABEL org.mxbuild.role="compile" org.mxbuild.distro="debian12"
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      cmake ninja-build ccache g++ make pkg-config patch python3 libopenblas-dev liblapack-dev libopencv-dev libzmq3-dev libprotobuf-dev protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
