#!/usr/bin/env bash
# Bounded coverage-guided fuzzing of every format's header and table parsers: SharpFuzz
# instruments VDiskPS.Formats.dll and afl-fuzz drives the harness over qemu-made seeds.
#
# usage: tests/VDiskPS.Fuzz/run.sh [TOTAL_SECONDS] [--keep-queue N]
#   TOTAL_SECONDS  whole budget, split evenly over the formats (default $VDISKPS_FUZZ_SECONDS, else 60)
#   --keep-queue N also copy the N smallest new inputs of each format's queue into the corpus
#
# A crash (any exception but an ImageException), a hang (no answer within $VDISKPS_FUZZ_HANG_MS,
# default 10000 ms) or an allocation beyond the 1 GiB heap limit is a finding: the input is saved to
# tests/VDiskPS.Formats.Tests/FuzzCorpus/<format>/, where FuzzCorpusTests replays it, and the script
# exits 1. Needs afl-fuzz (apt-get install afl++), qemu-img and the .NET SDK.
set -euo pipefail
total=${VDISKPS_FUZZ_SECONDS:-60}
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --keep-queue) keep=$2; shift 2 ;;
    *) total=$1; shift ;;
  esac
done
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
corpus="$root/tests/VDiskPS.Formats.Tests/FuzzCorpus"
formats=(qcow2 vmdk vhd vhdx vdi qcow qed parallels bochs cloop dmg luks ova)
per=$(( total / ${#formats[@]} ))
[ "$per" -ge 5 ] || per=5
for tool in afl-fuzz qemu-img qemu-io dotnet; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is not installed" >&2; exit 2; }
done

work=$(mktemp -d /tmp/vdiskps-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
dotnet build "$here/VDiskPS.Fuzz.csproj" -c Release -o "$work/bin" -nologo -v q >/dev/null
sharpfuzz=${SHARPFUZZ:-$HOME/.dotnet/tools/sharpfuzz}
if [ ! -x "$sharpfuzz" ]; then
  dotnet tool install SharpFuzz.CommandLine --version 2.3.0 --tool-path "$work/tool" >/dev/null
  sharpfuzz="$work/tool/sharpfuzz"
fi
"$sharpfuzz" "$work/bin/VDiskPS.Formats.dll" >/dev/null
"$here/make-seeds.sh" "$work/seeds"

export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_SKIP_BIN_CHECK=1 \
  AFL_NO_UI=1 AFL_NO_AFFINITY=1 AFL_FAST_CAL=1 \
  VDISKPS_FUZZ_SCRATCH="$work" DOTNET_GCHeapHardLimit=0x40000000 DOTNET_TieredPGO=0
findings=0
mkdir -p "$work/out"
for f in "${formats[@]}"; do
  echo "fuzzing $f for $per s"
  afl-fuzz -V "$per" -t "${VDISKPS_FUZZ_HANG_MS:-10000}" -m none -i "$work/seeds/$f" -o "$work/out/$f" \
    -- "$(command -v dotnet)" "$work/bin/VDiskPS.Fuzz.dll" fuzz "$f" > "$work/afl-$f.log" 2>&1 || {
      echo "afl-fuzz failed for $f:" >&2; tail -30 "$work/afl-$f.log" >&2; exit 2; }
  stats="$work/out/$f/default/fuzzer_stats"
  grep -E '^(execs_done|corpus_count|corpus_found|saved_crashes|saved_hangs|bitmap_cvg) ' "$stats" | tr -s ' ' | sed "s/^/  $f /"
  mkdir -p "$corpus/$f"
  for kind in crashes hangs; do
    for input in "$work/out/$f/default/$kind"/id:*; do
      [ -e "$input" ] || continue
      name="$kind-$(sha256sum "$input" | cut -c1-16).bin"
      cp "$input" "$corpus/$f/$name"
      echo "  FINDING ($kind): tests/VDiskPS.Formats.Tests/FuzzCorpus/$f/$name"
      findings=$((findings + 1))
    done
  done
  if [ "$keep" -gt 0 ]; then
    { ls -S -r "$work/out/$f/default/queue"/id:* 2>/dev/null | grep -v ',orig:' || true; } | head -n "$keep" | while read -r input; do
      cp "$input" "$corpus/$f/queue-$(sha256sum "$input" | cut -c1-16).bin"
    done
  fi
done
if [ "$findings" -gt 0 ]; then
  echo "run.sh: $findings finding(s); replay them with: dotnet test tests/VDiskPS.Formats.Tests --filter FullyQualifiedName~FuzzCorpusTests" >&2
  exit 1
fi
echo "run.sh: no findings"
