#!/usr/bin/env bash
# Make room for the peers' staging calls: the device tool copies the working tree with each call,
# and one 56 MiB peer chunk plus the whole tracked tree passes its 64 MiB limit. `hide` moves the
# two largest folders the staging calls do not need out of the tree; `restore` puts them back.
# Run from the repository root, on this machine (not on the GPU machine):
#
#   bash bench/peer_staging.sh hide      # before the seven staging calls
#   bash bench/peer_staging.sh restore   # right after the last one (before any engine call)
#
# HOLD (default /tmp/nanolang-peer-staging) keeps them in between; neither step overwrites.
set -euo pipefail
hold=${HOLD:-/tmp/nanolang-peer-staging}
paths=(bench/results nanolang/demo/model)
case ${1:-} in
  hide)
    for p in "${paths[@]}"; do
      [ -e "$hold/$p" ] && { echo "peer_staging: $hold/$p exists: restore first" >&2; exit 1; }
      [ -e "$p" ] || { echo "peer_staging: no $p here (run from the repository root)" >&2; exit 1; }
    done
    for p in "${paths[@]}"; do
      mkdir -p "$hold/$(dirname "$p")"
      mv "$p" "$hold/$p"
    done
    echo "peer_staging: moved ${paths[*]} to $hold" ;;
  restore)
    for p in "${paths[@]}"; do
      [ -e "$p" ] && { echo "peer_staging: $p exists here: nothing to restore over" >&2; exit 1; }
      [ -e "$hold/$p" ] || { echo "peer_staging: $hold/$p is missing" >&2; exit 1; }
    done
    for p in "${paths[@]}"; do
      mkdir -p "$(dirname "$p")"
      mv "$hold/$p" "$p"
    done
    echo "peer_staging: restored ${paths[*]}" ;;
  *)
    echo "usage: bash bench/peer_staging.sh hide|restore" >&2
    exit 2 ;;
esac
