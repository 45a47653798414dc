#!/bin/sh
# Write the control member's files (control, md5sums, symbols, triggers) of one package of
# a staged source tree, with this distro's own dpkg tools: Depends from its
# dpkg-shlibdeps, Installed-Size and fields from its dpkg-gencontrol. The .deb itself is
# assembled by mxbuild (debpack.py: the shared payload is compressed once for every
# distro) and then checked here again with this distro's dpkg-deb and lintian.
# Runs inside the cell's build image as the build user, with no network.
#   cd SRC && gencontrol.sh PACKAGE OUTDIR
# SRC holds debian/{control,changelog,shlibs.local}, debian/<package>/ (each package's
# file tree), DEBIAN/<package>/ (control-member extras). Environment: DEB_HOST_ARCH (the
# packages' architecture: arm64 packages are made in the amd64 image that holds the
# :arm64 libraries, and dpkg's tools then read /usr/lib/<its triplet> with its cross
# objdump and write Architecture: arm64), MULTIARCH,
# PRIVATE_DIR, PRIVATE_LINK (the name libmxnet.so's RPATH gives it); SIBLING_DEPENDS
# (packages of the same cell it needs at the exact version);
# for GPU variants also HOST_SONAMES (provided outside the package: CUDA runtime, driver),
# HOST_DEPENDS (their packages) and PATCHELF.
set -eu
pkg=$1 out=$2
root="debian/$pkg"
umask 022
export LC_ALL=C.UTF-8 TZ=UTC

mkdir -p "$root/DEBIAN" "$out"
for f in DEBIAN/"$pkg"/*; do
    if [ -e "$f" ]; then install -m 0644 "$f" "$root/DEBIAN/"; fi
done

# Depends for everything not bundled. Bundled sonames resolve through debian/shlibs.local
# to "no dependency"; a sibling package's library (libmxnet.so for libmxnet-scala) through
# its DEBIAN/symbols in the build tree; anything else must come from this distro's
# shlibs/symbols files. Sonames the host provides (CUDA, driver) cannot be found here:
# dpkg-shlibdeps analyses scratch copies without them, next to a link to the private
# directory so $ORIGIN/$PRIVATE_LINK still resolves; their packages come from matrix.yaml instead.
: > "debian/$pkg.substvars"
libdir="$root/usr/lib/$MULTIARCH"
private="$libdir/$PRIVATE_DIR"
objects=$(find "$libdir" -type f -name '*.so*' ! -path "$private/*" | sort)
scratch="$(pwd)/shlibdeps-scratch/$pkg"
analysed=""
for lib in $objects; do
    if [ -n "${HOST_SONAMES:-}" ]; then
        needed=$(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
        copy=""
        for so in $HOST_SONAMES; do
            if echo "$needed" | grep -qxF "$so"; then
                if [ -z "$copy" ]; then
                    copy="$scratch/${lib#$libdir/}"
                    mkdir -p "$(dirname "$copy")"
                    cp "$lib" "$copy"
                    if [ -d "$private" ]; then
                        ln -sfn "$(pwd)/$private" "$(dirname "$copy")/$PRIVATE_LINK"
                    fi
                fi
                "$PATCHELF" --remove-needed "$so" "$copy"
            fi
        done
        if [ -n "$copy" ]; then lib="$copy"; fi
    fi
    analysed="$analysed -e$lib"
done
if ! dpkg-shlibdeps -T"debian/$pkg.substvars" $analysed \
    $( [ -d "$private" ] && find "$private" -type f -name '*.so*' | sort | sed 's/^/-e/'); then
    echo "gencontrol: a NEEDED library is neither bundled, known to this distro, nor mapped" \
         "in matrix.yaml (variants.<variant>.runtime_packages)" >&2
    exit 5
fi
rm -rf "$scratch"
# The host's packages (CUDA runtime…) for a package whose libraries need host sonames.
depends="${SIBLING_DEPENDS:-}"
needs_host=""
for lib in $objects; do
    for so in ${HOST_SONAMES:-}; do
        if readelf -d "$lib" | grep -qF "[$so]"; then needs_host=1; fi
    done
done
if [ -n "$needs_host" ] && [ -n "${HOST_DEPENDS:-}" ]; then
    depends="${depends:+$depends, }$HOST_DEPENDS"
fi
echo "mxbuild:Depends=$depends" >> "debian/$pkg.substvars"
echo "misc:Depends=" >> "debian/$pkg.substvars"
cat "debian/$pkg.substvars"

# md5sums over the tree as packaged (every file, sorted), then the control file.
(cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z \
    | xargs -0r md5sum > DEBIAN/md5sums)
dpkg-gencontrol -p"$pkg" -P"$root" -T"debian/$pkg.substvars"
cp -p "$root"/DEBIAN/* "$out/"
echo "--- control"
cat "$out/control"
