#!/usr/bin/env bash
# Builds a small OCI image from Debian's busybox-static (/bin/busybox, or $BUSYBOX), without network.
#
# Usage: scripts/build-busybox-image.sh OUT_DIR [REF]
#   OUT_DIR      written as an OCI image layout directory (oci-layout, index.json, blobs/sha256/);
#                replaced if it exists
#   OUT_DIR.tar  the same layout as one tar file (for `skiff image import`)
#   REF          the index's org.opencontainers.image.ref.name (default: latest, the tag
#                `skopeo copy oci:OUT_DIR:latest ...` looks up)
# Prints the manifest digest (sha256:...) on stdout.
#
# The image: one gzip layer with /bin/busybox, a /bin symlink per applet, /etc/passwd,
# /etc/group, /tmp, /var/www, /root; config Cmd ["sh"] and a PATH. The output is byte-for-byte
# reproducible (fixed mtimes and owners, sorted entries, gzip -n, no timestamps in JSON), so
# the digest only changes with the busybox binary or this script.
set -euo pipefail

out=${1:?usage: build-busybox-image.sh OUT_DIR [REF]}
ref=${2:-latest}
busybox=${BUSYBOX:-/bin/busybox}
[[ $ref =~ ^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$ ]] || { echo "build-busybox-image: bad REF $ref" >&2; exit 1; }
[ -x "$busybox" ] || { echo "build-busybox-image: $busybox missing (apt-get install busybox-static)" >&2; exit 1; }

out=${out%/}
work=$(mktemp -d "${out}.work.XXXXXX")
trap 'rm -rf "$work"' EXIT

root=$work/rootfs
mkdir -p "$root"/{bin,etc,tmp,var/www,root}
cp "$busybox" "$root/bin/busybox"
chmod 0755 "$root/bin/busybox" "$root/bin" "$root/etc" "$root/var" "$root/var/www"
chmod 0700 "$root/root"
chmod 1777 "$root/tmp"
# One process for ~270 symlinks (a fork per `ln` costs a noticeable fraction of a second).
"$busybox" --list | python3 -c '
import os, sys
for a in sys.stdin.read().split():
    if a != "busybox":
        os.symlink("busybox", os.path.join(sys.argv[1], a))
' "$root/bin"
printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'www-data:x:33:33:www-data:/var/www:/bin/false' \
    'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$root/etc/passwd"
printf '%s\n' 'root:x:0:' 'www-data:x:33:' 'nogroup:x:65534:' >"$root/etc/group"
chmod 0644 "$root/etc/passwd" "$root/etc/group"

det=(--sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu)
tar "${det[@]}" -C "$root" -cf "$work/layer.tar" bin etc root tmp var
gzip -n -c "$work/layer.tar" >"$work/layer.tar.gz"

blobs=$work/layout/blobs/sha256
mkdir -p "$blobs"
sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
# Moves a file into the blob directory and prints its digest.
add_blob() {
    local h
    h=$(sha "$1")
    mv "$1" "$blobs/$h"
    echo "$h"
}

diff_id=$(sha "$work/layer.tar")
layer_size=$(size "$work/layer.tar.gz")
layer=$(add_blob "$work/layer.tar.gz")

arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"scripts/build-busybox-image.sh"}]}' \
    "$arch" "$diff_id" >"$work/config.json"
config_size=$(size "$work/config.json")
config=$(add_blob "$work/config.json")

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$config" "$config_size" "$layer" "$layer_size" >"$work/manifest.json"
manifest_size=$(size "$work/manifest.json")
manifest=$(add_blob "$work/manifest.json")

printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest" "$manifest_size" "$ref" >"$work/layout/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$work/layout/oci-layout"
chmod 0644 "$work/layout/index.json" "$work/layout/oci-layout" "$blobs"/*

tar "${det[@]}" -C "$work/layout" -cf "$work/layout.tar" oci-layout index.json blobs
rm -rf "$out" "$out.tar"
mv "$work/layout" "$out"
mv "$work/layout.tar" "$out.tar"
echo "sha256:$manifest"
