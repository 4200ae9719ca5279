#!/usr/bin/env bash
# Screenshots of the published dashboard (python publish.py first) with headless
# Chromium (Debian: apt-get install -y chromium), every host but 127.0.0.1
# unresolvable, so they also prove that the page loads nothing from a CDN:
#   docs/asv_regressions.png  the Regressions view
#   docs/asv_history.png      one benchmark's history (default: nblstm b64_h512 with float32,
#                             int8 and bfloat16 weights, commits evenly spaced)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PORT:-8765}"
HISTORY="${HISTORY:-bench_lstm.Forward.time_forward?p-impl=%27nblstm%27&p-case=%27b64_h512%27&p-dtype=%27float32%27&p-precision=%27float32%27&p-precision=%27int8%27&p-precision=%27bfloat16%27&x-axis-scale=even}"
python -m http.server "$PORT" --bind 127.0.0.1 -d docs/asv > /dev/null 2>&1 &
server=$!
trap 'kill "$server"' EXIT
sleep 1
shot() {  # shot OUT URL
    local profile
    profile="$(mktemp -d)"
    timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --host-resolver-rules="MAP * ~NOTFOUND, EXCLUDE 127.0.0.1" --hide-scrollbars \
        --user-data-dir="$profile" --virtual-time-budget=15000 --window-size=1400,900 \
        --screenshot="$1" "$2" 2> /dev/null
    rm -rf "$profile"
    echo "$1"
}
shot docs/asv_regressions.png "http://127.0.0.1:$PORT/index.html#/regressions"
shot docs/asv_history.png "http://127.0.0.1:$PORT/index.html#$HISTORY"
