#!/bin/sh
# Harvest libmxnet.so and the libraries it bundles from an official wheel.
# Runs inside the cell's build image, as the build user, with no network.
#   harvest.sh WHEEL OUTDIR PRIVATE_DIR_NAME BUNDLED_SONAME...
# Output: OUTDIR/libmxnet.so and OUTDIR/PRIVATE_DIR_NAME/*. The RPATH is rewritten in place
# on the host afterwards (mxbuild/elfedit.py): nothing here changes a file's layout.
set -eu
wheel=$1 out=$2 private=$3
shift 3

mkdir -p "$out/$private"
# Every native library the wheel carries must be accounted for in matrix.yaml.
unzip -Z1 "$wheel" | grep -E '^mxnet/[^/]+\.so(\.[0-9]+)*$' | sed 's|^mxnet/||' | sort > "$out/.wheel-libs"
printf '%s\n' libmxnet.so "$@" | sort > "$out/.declared-libs"
if ! cmp -s "$out/.wheel-libs" "$out/.declared-libs"; then
    echo "harvest: the wheel's native libraries differ from matrix.yaml (wheel.bundled):" >&2
    diff "$out/.declared-libs" "$out/.wheel-libs" >&2 || true
    exit 3
fi
rm -f "$out/.wheel-libs" "$out/.declared-libs"

unzip -q -o -j "$wheel" mxnet/libmxnet.so -d "$out"
for lib in "$@"; do
    unzip -q -o -j "$wheel" "mxnet/$lib" -d "$out/$private"
done

# Libraries upstream left unstripped lose their symbol tables and debug sections only
# (Debian policy 10.2, what dh_strip does): most wheels ship them stripped already and are
# left byte for byte; mxnet-cu92 1.7.0's libmxnet.so is 1.37 GB unstripped.
for lib in libmxnet.so "$@"; do
    [ "$lib" = libmxnet.so ] || lib="$private/$lib"
    if file -L "$out/$lib" | grep -q 'not stripped'; then
        strip --strip-unneeded --remove-section=.comment --remove-section=.note "$out/$lib"
        echo "stripped $lib"
    fi
done

soname=$(readelf -d "$out/libmxnet.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
if [ -z "$soname" ]; then
    # Some official builds (the 1.6.0 cu90 and 1.7.0 cu92 wheels) carry no SONAME. Adding
    # one grows .dynstr, i.e. appends a segment old ldconfigs reject: shipped as built.
    echo "harvest: libmxnet.so has no SONAME (shipped as upstream built it)"
elif [ "$soname" != "libmxnet.so" ]; then
    echo "harvest: SONAME of libmxnet.so is '$soname', expected libmxnet.so" >&2
    exit 4
fi
readelf -d "$out/libmxnet.so" | grep -E 'RPATH|RUNPATH|NEEDED|SONAME'
chmod 0644 "$out/libmxnet.so"
for lib in "$@"; do chmod 0644 "$out/$private/$lib"; done   # a wheel may bundle nothing
ls -l "$out" "$out/$private"
