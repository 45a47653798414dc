#!/bin/sh
# Write the control member's files (control, md5sums, symbols, triggers) for a staged
# package tree, with this distro's own dpkg tools: Depends from its dpkg-shlibdeps,
# Installed-Size and fields from its dpkg-gencontrol. The .deb itself is assembled by
# mxbuild (debpack.py: the shared payload is compressed once for every distro) and then
# checked here again with this distro's dpkg-deb and lintian.
# Runs inside the cell's build image as the build user, with no network.
#   cd SRC && gencontrol.sh OUTDIR
# SRC holds debian/{control,changelog,shlibs.local}, debian/$PKG (the file tree),
# DEBIAN/ (control-member extras). Environment: PKG, MULTIARCH, PRIVATE_DIR; for GPU
# variants also HOST_SONAMES (provided outside the package: CUDA runtime, driver),
# HOST_DEPENDS (their packages) and PATCHELF.
set -eu
out=$1
root="debian/$PKG"
umask 022
export LC_ALL=C.UTF-8 TZ=UTC

mkdir -p "$root/DEBIAN" "$out"
for f in DEBIAN/*; do install -m 0644 "$f" "$root/DEBIAN/"; done

# Depends for everything not bundled. Bundled sonames resolve through debian/shlibs.local
# to "no dependency"; anything else must come from this distro's shlibs/symbols files.
# Sonames the host provides (CUDA, driver) cannot be found here: dpkg-shlibdeps analyses a
# scratch copy of libmxnet.so without them, next to a link to the private directory so
# $ORIGIN still resolves; their packages come from matrix.yaml instead.
: > "debian/$PKG.substvars"
lib="$root/usr/lib/$MULTIARCH/libmxnet.so"
if [ -n "${HOST_SONAMES:-}" ]; then
    scratch="$(pwd)/shlibdeps-scratch"
    mkdir -p "$scratch"
    cp "$lib" "$scratch/libmxnet.so"
    ln -s "$(pwd)/$root/usr/lib/$MULTIARCH/$PRIVATE_DIR" "$scratch/$PRIVATE_DIR"
    needed=$(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
    for so in $HOST_SONAMES; do
        if echo "$needed" | grep -qxF "$so"; then
            "$PATCHELF" --remove-needed "$so" "$scratch/libmxnet.so"
        fi
    done
    lib="$scratch/libmxnet.so"
fi
private="$root/usr/lib/$MULTIARCH/$PRIVATE_DIR"   # absent when nothing is bundled
if ! dpkg-shlibdeps -T"debian/$PKG.substvars" -e"$lib" \
    $( [ -d "$private" ] && find "$private" -type f -name '*.so*' | sort | sed 's/^/-e/'); then
    echo "gencontrol: a NEEDED library is neither bundled, known to this distro, nor mapped" \
         "in matrix.yaml (variants.<variant>.runtime_packages)" >&2
    exit 5
fi
rm -rf "${scratch:-/nonexistent}"
echo "mxbuild:Depends=${HOST_DEPENDS:-}" >> "debian/$PKG.substvars"
echo "misc:Depends=" >> "debian/$PKG.substvars"
cat "debian/$PKG.substvars"

# md5sums over the tree as packaged (every file, sorted), then the control file.
(cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z \
    | xargs -0r md5sum > DEBIAN/md5sums)
dpkg-gencontrol -p"$PKG" -P"$root" -T"debian/$PKG.substvars"
cp -p "$root"/DEBIAN/* "$out/"
echo "--- control"
cat "$out/control"
