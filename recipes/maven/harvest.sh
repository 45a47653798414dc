#!/bin/sh
# Harvest the native stack from an official MXNet JVM jar (mxnet-full_2.11-linux-*):
# libmxnet.so, the JNI library libmxnet-scala.so and the libraries lib/native/ bundles.
# Runs inside the cell's build image, as the build user, with no network.
#   harvest.sh JAR OUTDIR PRIVATE_DIR_NAME BUNDLED_SONAME...
# Environment: KEEP_AS_IS (sonames whose licence forbids modifying them: not stripped),
# PATCHELF. Output: OUTDIR/libmxnet.so, OUTDIR/jni/libmxnet-scala.so,
# OUTDIR/PRIVATE_DIR_NAME/<bundled>.
set -eu
jar=$1 out=$2 private=$3
shift 3

mkdir -p "$out/$private" "$out/jni"
unzip -Z1 "$jar" | sed -n 's|^lib/native/\([^/][^/]*\)$|\1|p' | sort > "$out/.jar-natives"
for required in libmxnet.so libmxnet-scala.so; do
    if ! grep -qxF "$required" "$out/.jar-natives"; then
        echo "harvest: the jar has no lib/native/$required (it is not a full jar with natives)" >&2
        exit 3
    fi
done
grep -vxF -e libmxnet.so -e libmxnet-scala.so "$out/.jar-natives" > "$out/.jar-bundled" || true
printf '%s\n' "$@" | sed '/^$/d' | sort > "$out/.declared"
if ! cmp -s "$out/.jar-bundled" "$out/.declared"; then
    echo "harvest: lib/native/ of the jar differs from matrix.yaml (jar.bundled):" >&2
    diff "$out/.declared" "$out/.jar-bundled" >&2 || true
    exit 4
fi
rm -f "$out/.jar-natives" "$out/.jar-bundled" "$out/.declared"

unzip -q -o -j "$jar" lib/native/libmxnet.so -d "$out"
unzip -q -o -j "$jar" lib/native/libmxnet-scala.so -d "$out/jni"
for lib in "$@"; do
    unzip -q -o -j "$jar" "lib/native/$lib" -d "$out/$private"
done

# Unstripped libraries lose their symbol tables (what dh_strip does), except those whose
# licence forbids any modification (Intel's MKL-ML and libiomp5).
for lib in libmxnet.so jni/libmxnet-scala.so $(for b in "$@"; do echo "$private/$b"; done); do
    name=${lib##*/}
    case " ${KEEP_AS_IS:-} " in *" $name "*) echo "kept as is: $lib"; continue ;; esac
    if file -L "$out/$lib" | grep -q 'not stripped'; then
        strip --strip-unneeded --remove-section=.comment --remove-section=.note "$out/$lib"
        echo "stripped $lib"
    fi
done
soname=$(readelf -d "$out/libmxnet.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
if [ -n "$soname" ] && [ "$soname" != libmxnet.so ]; then
    echo "harvest: SONAME of libmxnet.so is '$soname', expected libmxnet.so" >&2
    exit 5
fi
readelf -d "$out/libmxnet.so" "$out/jni/libmxnet-scala.so" \
    | grep -E 'File:|RPATH|RUNPATH|NEEDED|SONAME'
chmod 0644 "$out/libmxnet.so" "$out/jni/libmxnet-scala.so"
for lib in "$@"; do chmod 0644 "$out/$private/$lib"; done
ls -lR "$out"
