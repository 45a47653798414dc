#!/bin/sh
# Build MXNet's scala-package — the modules the thin jar is made of — from a copy of a
# source tree, with Maven on the image's JDK 8 (the Scala 2.11 compiler runs on no other).
# Runs in the JVM build image (docker/jvm-build.Dockerfile.j2) as the build user, with
# network (Maven Central). The tree is never the user's: mxbuild copied it here.
#   build-scala.sh SRC OUT
# SRC: scala-package/, include/, the 3rdparty headers, and lib/: the cpu libmxnet.so and
# what it bundles, which the code generator and the macros load at build time (upstream's
# POMs read it from ${MXNET_DIR}/lib, MXNET_DIR defaulting to the tree's top).
# Environment: MAVEN_REPO (the local repository: a Docker volume), TRUSTSTORE and
# TRUSTSTORE_PASSWORD (JKS for Maven Central over https).
# Output: OUT/core.jar, OUT/infer.jar (the modules' jars).
#
# Upstream's POMs as they are, steered from the command line only:
#   -pl init,init-native,macros,native,core,infer  what core + infer need (not examples,
#                      spark, assembly: the full jar with natives is not wanted)
#   -Dskip=true        the one parameter bound to ${skip} in these modules is the
#                      scala-maven-plugin's doc-jar goal: no scaladoc (minutes, not shipped)
#   -Dmaven.test.skip=true -DskipTests   no test compilation, no tests
#   -Dcxx=g++          the compiler of the init-native and native modules
set -eu
src=$1 out=$2
export MAVEN_OPTS="-Xmx2g -Djavax.net.ssl.trustStore=$TRUSTSTORE -Djavax.net.ssl.trustStorePassword=$TRUSTSTORE_PASSWORD"
java -version 2>&1 | head -n 1
cd "$src/scala-package"
mvn -B -V -Dstyle.color=never \
    -Dorg.slf4j.simpleLogger.log.org.apache.maven.cli.transfer.Slf4jMavenTransferListener=warn \
    -Dmaven.repo.local="$MAVEN_REPO" -DskipTests -Dmaven.test.skip=true -Dskip=true \
    -Dcxx="${CXX:-g++}" -pl init,init-native,macros,native,core,infer package
mkdir -p "$out"
for module in core infer; do
    found=""
    for jar in "$module"/target/mxnet-"$module"-*.jar; do
        case $jar in *-sources.jar|*-javadoc.jar) continue ;; esac
        if [ -n "$found" ] || [ ! -f "$jar" ]; then
            echo "build-scala: expected one $module/target/mxnet-$module-<version>.jar" >&2
            ls -l "$module/target" >&2 || true
            exit 3
        fi
        found=$jar
    done
    if [ -z "$found" ]; then
        echo "build-scala: $module built no jar" >&2
        exit 3
    fi
    cp "$found" "$out/$module.jar"
    echo "$found -> $out/$module.jar"
done
