#!/usr/bin/env bash
# Record the fast subset of the suite over the last N commits of main that touched
# nblstm/ (default 15), each commit built in its own virtualenv (asv.conf.json).
# Results go to results/<machine>/ and are merged with what is there: commits
# already measured are skipped (--skip-existing-commits), so rerunning it after new
# commits on main only measures the new ones.
#
#   ./history.sh            # last 15 commits of main touching nblstm/
#   ./history.sh 30 main    # last 30
#   ASV_EXTRA="--quick --dry-run" ./history.sh 2   # smoke, nothing saved
set -euo pipefail
cd "$(dirname "$0")"
N="${1:-15}"
BRANCH="${2:-main}"
# asv's machine name: this host's (asv machine --yes; "vm" on the VM that recorded
# results/vm/), or ASV_MACHINE.
if [ ! -e "${HOME}/.asv-machine.json" ]; then asv machine --yes > /dev/null; fi
MACHINE_ARGS=()
if [ -n "${ASV_MACHINE:-}" ]; then MACHINE_ARGS=(--machine "$ASV_MACHINE"); fi
HASHES="$(mktemp)"
trap 'rm -f "$HASHES"' EXIT
# Oldest first, so that an interrupted run leaves a contiguous history.
git log --format=%H -"$N" "$BRANCH" -- ../nblstm/ | tac > "$HASHES"
echo "commits: $(wc -l < "$HASHES") ($(head -c 8 "$HASHES")..$(tail -n 1 "$HASHES" | head -c 8))"
# The fast subset: float32 grid for nblstm and its peers; nblstm's int8 and bfloat16
# weights on the single-layer cases (skipped on commits that lack the format);
# peak memory; cold start; nblstm's stepping calls (skipped before lstm.stream()).
# rounds=1: one process per benchmark (asv's default is 2).
exec env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE nice -n "${NICE:-5}" \
    asv run "HASHFILE:$HASHES" "${MACHINE_ARGS[@]}" --skip-existing-commits --show-stderr -a rounds=1 \
    -b "time_forward\(.*, 'float32', 'float32'\)" \
    -b "time_forward\('nblstm', '(stream_b1_h128|b8_h256|b64_h512|T50_B4_H1536)', 'float32', '(int8|bfloat16)'\)" \
    -b "peakmem_forward" \
    -b "ColdStart" \
    -b "time_(stream|cell_step)\('nblstm'" \
    ${ASV_EXTRA:-}
