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

# move every path from under $1 to under $2 ("." is the tree), after checking all of them first
move_all() {
  local from=$1 to=$2 p
  for p in "${paths[@]}"; do
    [ -e "$to/$p" ] && { echo "peer_staging: $to/$p exists: $3" >&2; exit 1; }
    [ -e "$from/$p" ] || { echo "peer_staging: no $from/$p: $4" >&2; exit 1; }
  done
  for p in "${paths[@]}"; do
    mkdir -p "$to/$(dirname "$p")"
    mv "$from/$p" "$to/$p"
  done
}

case ${1:-} in
  hide)
    move_all . "$hold" "restore first" "run from the repository root"
    echo "peer_staging: moved ${paths[*]} to $hold" ;;
  restore)
    move_all "$hold" . "nothing to restore over" "was it hidden?"
    echo "peer_staging: restored ${paths[*]}" ;;
  *)
    echo "usage: bash bench/peer_staging.sh hide|restore" >&2
    exit 2 ;;
esac
