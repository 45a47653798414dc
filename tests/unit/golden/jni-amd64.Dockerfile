# JNI build image for debian12 (bookworm): the build image plus g++,
# so libmxnet-scala.so needs only the libstdc++ symbol versions this distro provides.
FROM mxbuild/build:debian12-0123456789ab
LABEL org.mxbuild.role="jni" org.mxbuild.distro="debian12" org.mxbuild.build-ref="mxbuild/build:debian12-0123456789ab"
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ \
 && rm -rf /var/lib/apt/lists/*
