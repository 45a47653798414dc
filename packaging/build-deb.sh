#!/bin/sh
# Build the .deb from a staged source tree, with this distro's own dpkg tools.
# Runs inside the cell's build image as the build user, with no network.
#   cd SRC && build-deb.sh OUTDIR
# SRC holds debian/{control,changelog,shlibs.local}, debian/$PKG (the file tree),
# DEBIAN/ (control-member extras). Environment: PKG, MULTIARCH, PRIVATE_DIR,
# SOURCE_DATE_EPOCH, DEB_COMPRESSOR; for GPU variants also HOST_SONAMES (provided outside
# the package: CUDA runtime, driver), HOST_DEPENDS (their packages) and PATCHELF.
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
    echo "build-deb: a NEEDED library is neither bundled, known to this distro, nor mapped" \
         "in matrix.yaml (variants.<variant>.runtime_packages)" >&2
    exit 5
fi
rm -rf "${scratch:-/nonexistent}"
echo "mxbuild:Depends=${HOST_DEPENDS:-}" >> "debian/$PKG.substvars"
echo "misc:Depends=" >> "debian/$PKG.substvars"
cat "debian/$PKG.substvars"

# Normalise the tree: fixed modes, every mtime set to SOURCE_DATE_EPOCH.
find "$root" -type d -exec chmod 0755 {} +
find "$root" -type f -exec chmod 0644 {} +
(cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z \
    | xargs -0r md5sum > DEBIAN/md5sums)
chmod 0644 "$root/DEBIAN/md5sums"
dpkg-gencontrol -p"$PKG" -P"$root" -T"debian/$PKG.substvars"
find "$root" -print0 | xargs -0r touch --no-dereference --date="@$SOURCE_DATE_EPOCH"

if dpkg-deb --help | grep -q -- --root-owner-group; then
    dpkg-deb --root-owner-group -Z"$DEB_COMPRESSOR" --build "$root" "$out"
else
    # dpkg < 1.19 (xenial): fakeroot shows every file as root:root to dpkg-deb
    fakeroot dpkg-deb -Z"$DEB_COMPRESSOR" --build "$root" "$out"
fi
deb=$(ls "$out"/*.deb)
echo "--- dpkg-deb -I"
dpkg-deb -I "$deb"
echo "--- dpkg-deb -c"
dpkg-deb -c "$deb"
