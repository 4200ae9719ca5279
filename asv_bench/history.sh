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
# weights on b64_h512 (skipped on commits that lack the format; each such process
# compiles its kernels for 20-40 s, so one case each); peak memory; cold start;
# nblstm's stepping calls (skipped before lstm.stream()).
# rounds=1: one process per benchmark (asv's default is 2); repeat=(1,5,8.0): at
# most 5 samples or 8 s a benchmark (the cold start's defaults are 5 and 120 s).
exec env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE nice -n "${NICE:-5}" \
    asv run "HASHFILE:$HASHES" "${MACHINE_ARGS[@]}" --skip-existing-commits --show-stderr -a rounds=1 -a "repeat=(1,5,8.0)" \
    -b "time_forward\(.*, 'float32', 'float32'\)" \
    -b "time_forward\('nblstm', 'b64_h512', 'float32', '(int8|bfloat16)'\)" \
    -b "peakmem_forward" \
    -b "ColdStart" \
    -b "time_(stream|cell_step)\('nblstm'" \
    ${ASV_EXTRA:-}
