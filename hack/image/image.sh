#!/usr/bin/env bash
# Builds and tests the podcreds image with buildah alone: no Docker engine,
# no registry, nothing pulled. `make image` and `make image-test` call it.
#
#   hack/image/image.sh build BINARY IMAGE VERSION COMMIT ARCHIVE
#   hack/image/image.sh test  IMAGE VERSION COMMIT
#
# The image is FROM scratch with what the Dockerfile's distroless base gives
# the agent: the static binary at /podcreds, the CA bundle Go's TLS clients
# read (/etc/ssl/certs/ca-certificates.crt, from Debian's ca-certificates on
# this machine), an /etc/passwd and /etc/group naming root and nobody, uid 0,
# ENTRYPOINT /podcreds and CMD agent. storage-driver vfs because overlay
# does not nest inside containers, as on CI machines.
set -euo pipefail

bah() { buildah --storage-driver vfs "$@"; }
die() { echo "image.sh: FAIL: $*" >&2; exit 1; }

build() {
	local bin=$1 image=$2 version=$3 commit=$4 archive=$5
	local bundle=/etc/ssl/certs/ca-certificates.crt
	[ -s "$bundle" ] || die "$bundle is missing: install Debian's ca-certificates"
	go version -m "$bin" | grep -q 'CGO_ENABLED=0' || die "$bin is not a static (CGO_ENABLED=0) build: make build makes one"

	# Global, not local: the EXIT trap runs after this function returns.
	etc=$(mktemp -d)
	ctr=""
	trap 'rm -rf "$etc"; [ -z "$ctr" ] || bah rm "$ctr" >/dev/null' EXIT
	printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' >"$etc/passwd"
	printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"$etc/group"

	ctr=$(bah from scratch)
	bah copy --chmod 0755 "$ctr" "$bin" /podcreds >/dev/null
	bah copy --chmod 0644 "$ctr" "$bundle" /etc/ssl/certs/ca-certificates.crt >/dev/null
	bah copy --chmod 0644 "$ctr" "$etc/passwd" /etc/passwd >/dev/null
	bah copy --chmod 0644 "$ctr" "$etc/group" /etc/group >/dev/null
	bah config --os linux --arch "$(go env GOARCH)" --user 0:0 --workingdir / \
		--entrypoint '["/podcreds"]' --cmd agent \
		--label org.opencontainers.image.title=podcreds \
		--label org.opencontainers.image.source=https://github.com/podcreds/podcreds \
		--label org.opencontainers.image.version="$version" \
		--label org.opencontainers.image.revision="$commit" "$ctr"
	bah commit --quiet --format oci --rm "$ctr" "$image" >/dev/null
	ctr=""
	rm -f "$archive"
	bah push --quiet "$image" "oci-archive:$archive:$image"
	echo "image $image (version $version), also as $archive ($(du -h "$archive" | cut -f1))"
}

test_image() {
	local image=$1 version=$2 commit=$3
	local fmt='{{.OCIv1.Config.Entrypoint}} {{.OCIv1.Config.Cmd}} {{.OCIv1.Config.User}}'
	local cfg
	cfg=$(bah inspect --type image --format "$fmt" "$image") || die "no image $image: run make image"
	[ "$cfg" = '[/podcreds] [agent] 0:0' ] || die "image config: entrypoint, cmd and user are $cfg; want [/podcreds] [agent] 0:0"

	ctr=$(bah from --quiet "$image")
	trap 'bah rm "$ctr" >/dev/null' EXIT
	# The binary runs in the image's root (chroot isolation: no runtime,
	# no daemon), prints the stamped build and finds the CA bundle.
	local out
	out=$(bah run --isolation chroot "$ctr" -- /podcreds version --ca-bundle) || die "podcreds version --ca-bundle failed in the image: $out"
	echo "$out"
	grep -qF "podcreds $version (commit $commit," <<<"$out" || die "the image's binary is not the stamped build $version $commit"
	grep -qE '^system CA certificates: [1-9][0-9]*$' <<<"$out" || die "the binary finds no CA certificates in the image"
	# The agent starts, reads its configuration and refuses it clearly.
	if out=$(bah run --isolation chroot "$ctr" -- /podcreds agent 2>&1); then
		die "podcreds agent without a node name should refuse to start, said: $out"
	fi
	grep -q 'node-name (or NODE_NAME) is required' <<<"$out" || die "podcreds agent in the image said: $out"
	echo "podcreds agent in the image refuses to start without a node name, as it should"
	echo "image-test: PASS ($image)"
}

case ${1:-} in
build) shift; build "$@" ;;
test) shift; test_image "$@" ;;
*) die "usage: $0 build BINARY IMAGE VERSION COMMIT ARCHIVE | test IMAGE VERSION COMMIT" ;;
esac
