#!/bin/sh
# Push a few tiny demo images into the compose registry through the Registry
# v2 API, with nothing but sh and curl (runs in curlimages/curl).
#
#   REGISTRY=http://registry:5000 sh seed.sh   (the default)
#
# Each image is one OCI manifest with a small config blob and a one-file
# layer; their content is fixed, so seeding twice pushes the same digests and
# regmon sees no overwrite. Seed an overwrite by hand with
#   SEED_SALT=2 sh seed.sh
set -eu

REGISTRY=${REGISTRY:-http://registry:5000}
SALT=${SEED_SALT:-}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

log() { printf 'seed: %s\n' "$*" >&2; }

wait_for_registry() {
    i=0
    until curl -fsS -o /dev/null "$REGISTRY/v2/"; do
        i=$((i + 1))
        if [ "$i" -ge 60 ]; then
            log "registry $REGISTRY/v2/ not answering after 60 tries"
            exit 1
        fi
        sleep 1
    done
}

digest_of() { printf 'sha256:%s' "$(sha256sum "$1" | cut -d' ' -f1)"; }
size_of() { wc -c < "$1" | tr -d ' '; }

# push_blob REPO FILE: monolithic upload (POST for a session, PUT with digest).
push_blob() {
    repo=$1 file=$2
    digest=$(digest_of "$file")
    if curl -fs -o /dev/null -I "$REGISTRY/v2/$repo/blobs/$digest"; then
        return 0
    fi
    location=$(curl -fsS -o /dev/null -D - -X POST "$REGISTRY/v2/$repo/blobs/uploads/" \
        | tr -d '\r' | sed -n 's/^[Ll]ocation: *//p')
    [ -n "$location" ] || { log "no upload location for $repo"; exit 1; }
    case $location in
        http://* | https://*) ;;
        *) location="$REGISTRY$location" ;;
    esac
    case $location in
        *\?*) sep='&' ;;
        *) sep='?' ;;
    esac
    curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' \
        --data-binary "@$file" "$location${sep}digest=$digest"
}

# push_image REPO TAG: config blob + one layer + OCI image manifest.
push_image() {
    repo=$1 tag=$2
    dir="$WORK/$repo/$tag"
    mkdir -p "$dir/rootfs"

    printf 'regmon demo image %s:%s%s\n' "$repo" "$tag" "$SALT" > "$dir/rootfs/hello.txt"
    touch -t 202001010000 "$dir/rootfs/hello.txt"
    tar -C "$dir/rootfs" -cf "$dir/layer.tar" hello.txt
    layer_digest=$(digest_of "$dir/layer.tar")

    printf '{"architecture":"amd64","os":"linux","config":{"Labels":{"org.opencontainers.image.title":"%s","org.opencontainers.image.version":"%s"}},"rootfs":{"type":"layers","diff_ids":["%s"]}}' \
        "$repo" "$tag" "$layer_digest" > "$dir/config.json"

    push_blob "$repo" "$dir/config.json"
    push_blob "$repo" "$dir/layer.tar"

    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' \
        "$(digest_of "$dir/config.json")" "$(size_of "$dir/config.json")" \
        "$layer_digest" "$(size_of "$dir/layer.tar")" > "$dir/manifest.json"

    curl -fsS -o /dev/null -X PUT \
        -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
        --data-binary "@$dir/manifest.json" "$REGISTRY/v2/$repo/manifests/$tag"
    log "pushed $repo:$tag $(digest_of "$dir/manifest.json")"
}

wait_for_registry
push_image demo/app 1.0
push_image demo/app 2.0
push_image demo/web stable
log "done"
