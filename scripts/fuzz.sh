#!/usr/bin/env bash
# Fuzzes the decoders of untrusted input (`make fuzz`): builds the cargo-fuzz crate in fuzz/
# and runs each of its targets for FUZZ_SECONDS, seeded with the committed corpus
# fuzz/corpus/<target> and a dictionary from fuzz/dict. New inputs go to a scratch corpus
# under the target dir, so a run leaves the tree as it was; FUZZ_MERGE=1 merges those that
# add coverage into the committed corpus (then commit them: `make test` replays it).
# Crash inputs land in fuzz/artifacts/<target>/; the run fails if any target crashed.
#
# Settings (environment or make variables):
#   FUZZ_SECONDS     seconds per target (default 600)
#   FUZZ_TARGETS     space-separated targets (default: all of `cargo fuzz list`)
#   FUZZ_TIMEOUT     seconds one input may take before it counts as a hang (default 10)
#   FUZZ_MERGE       1: merge new coverage into fuzz/corpus/<target> afterwards
#   FUZZ_TOOLCHAIN   nightly or stable (default: nightly when rustup has it, else stable
#                    with RUSTC_BOOTSTRAP=1, which lets stable take cargo-fuzz's -Z flags)
#   FUZZ_TARGET_DIR  cargo's target dir for the instrumented build (default fuzz/target)
#   FUZZ_BUILD_ARGS  extra `cargo fuzz build/run` options (e.g. "-s none" for no ASan)
#   FUZZ_ARGS        extra libFuzzer options (e.g. "-max_len=65536")
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

FUZZ_SECONDS=${FUZZ_SECONDS:-600}
FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-10}
FUZZ_MERGE=${FUZZ_MERGE:-0}
FUZZ_TARGET_DIR=${FUZZ_TARGET_DIR:-$ROOT/fuzz/target}
[[ $FUZZ_TARGET_DIR == /* ]] || FUZZ_TARGET_DIR=$ROOT/$FUZZ_TARGET_DIR
read -r -a BUILD_ARGS <<<"${FUZZ_BUILD_ARGS:-}"
read -r -a LIBFUZZER_ARGS <<<"${FUZZ_ARGS:-}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi

toolchain=${FUZZ_TOOLCHAIN:-}
if [[ -z $toolchain ]]; then
    if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
        toolchain=nightly
    else
        toolchain=stable
    fi
fi
case $toolchain in
nightly) CARGO=(cargo +nightly) ;;
stable)
    # cargo-fuzz passes -Z flags (sanitizers, coverage instrumentation) that only a nightly
    # compiler takes; RUSTC_BOOTSTRAP=1 lets the stable one take them too.
    export RUSTC_BOOTSTRAP=1
    CARGO=(cargo)
    ;;
*)
    echo "fuzz: FUZZ_TOOLCHAIN must be nightly or stable, not $toolchain" >&2
    exit 2
    ;;
esac

fuzz() {
    (cd fuzz && "${CARGO[@]}" fuzz "$@")
}

dict_of() {
    case $1 in
    body_json | patch_*) echo fuzz/dict/json.dict ;;
    body_yaml) echo fuzz/dict/yaml.dict ;;
    body_protobuf) echo fuzz/dict/protobuf.dict ;;
    *_selector) echo fuzz/dict/selector.dict ;;
    esac
}

read -r -a targets <<<"${FUZZ_TARGETS:-$(fuzz list | tr '\n' ' ')}"
echo "fuzz: ${#targets[@]} targets, ${FUZZ_SECONDS}s each, toolchain $toolchain ($("${CARGO[@]}" --version))"

# Built once; every target then runs that build (`cargo fuzz run` would build again first).
fuzz build --target-dir "$FUZZ_TARGET_DIR" "${BUILD_ARGS[@]}"
profile=release
for a in "${BUILD_ARGS[@]}"; do
    if [[ $a == -D || $a == --dev ]]; then
        profile=debug
    fi
done
bin_dir=$FUZZ_TARGET_DIR/$(rustc -vV | sed -n 's/^host: //p')/$profile
# As cargo-fuzz runs its targets.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_odr_violation=0}

failed=()
for t in "${targets[@]}"; do
    corpus=$ROOT/fuzz/corpus/$t
    scratch=$FUZZ_TARGET_DIR/corpus/$t
    artifacts=$ROOT/fuzz/artifacts/$t
    mkdir -p "$corpus" "$scratch" "$artifacts"
    args=(-max_total_time="$FUZZ_SECONDS" -timeout="$FUZZ_TIMEOUT" -print_final_stats=1
        -artifact_prefix="$artifacts/")
    dict=$(dict_of "$t")
    if [[ -n $dict ]]; then
        args+=(-dict="$ROOT/$dict")
    fi
    echo "fuzz: $t for ${FUZZ_SECONDS}s"
    # New inputs go to the first directory (scratch); the committed corpus is only read.
    if ! "$bin_dir/$t" "${args[@]}" "${LIBFUZZER_ARGS[@]}" "$scratch" "$corpus"; then
        failed+=("$t")
        continue
    fi
    if [[ $FUZZ_MERGE == 1 ]]; then
        echo "fuzz: merging new coverage of $t into fuzz/corpus/$t"
        "$bin_dir/$t" -merge=1 "$corpus" "$scratch"
    fi
done

if ((${#failed[@]})); then
    echo "fuzz: crashes in: ${failed[*]} (inputs in fuzz/artifacts/<target>/; reproduce with" >&2
    echo "      cargo fuzz run <target> <input>; add the input to fuzz/corpus/<target> when fixed)" >&2
    exit 1
fi
echo "fuzz: no crashes"
