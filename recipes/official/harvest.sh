#!/bin/sh
# Harvest the native libraries of an official MXNet archive: a wheel (mxnet/) or a JVM jar
# with natives (lib/native/). One path for recipes "wheel" and "maven" (and the JVM half
# of "wheel-jvm" harvests through "wheel").
# Runs inside the cell's build image, as the build user, with no network.
#   harvest.sh ARCHIVE NATIVE_DIR OUTDIR PRIVATE_DIR_NAME OWN_LIBRARY... -- BUNDLED_SONAME...
# OWN_LIBRARY: NAME=REL, a library of MXNet's own under NATIVE_DIR and where it goes under
# OUTDIR (libmxnet.so=libmxnet.so first; libmxnet-scala.so=jni/libmxnet-scala.so); a
# BUNDLED_SONAME goes to OUTDIR/PRIVATE_DIR_NAME/.
# Environment: DECLARED_AT (the matrix.yaml key that lists the bundled libraries, for the
# error), KEEP_AS_IS (sonames whose licence forbids modifying them: not stripped).
# The RPATH is rewritten on the host afterwards (mxbuild/elfedit.py): nothing here changes
# a file's layout.
set -eu
archive=$1 natives=$2 out=$3 private=$4
shift 4
own=""
while [ $# -gt 0 ] && [ "$1" != -- ]; do own="$own $1"; shift; done
if [ $# -gt 0 ]; then shift; fi    # the --

mkdir -p "$out/$private"
# Every native library the archive carries must be accounted for in matrix.yaml.
unzip -Z1 "$archive" | sed -n "s|^$natives/\([^/]*\.so\(\.[0-9][0-9]*\)*\)$|\1|p" | sort > "$out/.found"
{ for pair in $own; do echo "${pair%%=*}"; done; printf '%s\n' "$@"; } | sed '/^$/d' | sort > "$out/.declared"
if ! cmp -s "$out/.found" "$out/.declared"; then
    echo "harvest: the native libraries of $natives/ differ from matrix.yaml (${DECLARED_AT:-bundled}):" >&2
    diff "$out/.declared" "$out/.found" >&2 || true
    exit 3
fi
rm -f "$out/.found" "$out/.declared"

rels=""
for pair in $own; do
    name=${pair%%=*} rel=${pair#*=}
    mkdir -p "$out/$(dirname "$rel")"
    unzip -q -o -j "$archive" "$natives/$name" -d "$out/$(dirname "$rel")"
    [ "$name" = "${rel##*/}" ] || mv "$out/$(dirname "$rel")/$name" "$out/$rel"
    rels="$rels $rel"
done
for lib in "$@"; do
    unzip -q -o -j "$archive" "$natives/$lib" -d "$out/$private"
    rels="$rels $private/$lib"
done

# Libraries upstream left unstripped lose their symbol tables and debug sections only
# (Debian policy 10.2, what dh_strip does), except those whose licence forbids any
# modification (Intel's MKL-ML and libiomp5): most archives ship them stripped already
# and are left byte for byte; mxnet-cu92 1.7.0's libmxnet.so is 1.37 GB unstripped.
for rel in $rels; do
    case " ${KEEP_AS_IS:-} " in *" ${rel##*/} "*) echo "kept as is: $rel"; continue ;; esac
    if file -L "$out/$rel" | grep -q 'not stripped'; then
        strip --strip-unneeded --remove-section=.comment --remove-section=.note "$out/$rel"
        echo "stripped $rel"
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
for rel in $rels; do
    case $rel in "$private"/*) ;; *) readelf -d "$out/$rel" | grep -E 'RPATH|RUNPATH|NEEDED|SONAME' ;; esac
done
for rel in $rels; do chmod 0644 "$out/$rel"; done
ls -lR "$out"
