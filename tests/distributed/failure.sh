#!/usr/bin/env bash
# One rank of three throws in the middle of epoch 3: all ranks must exit non-zero within
# seconds (no rank left waiting in an all-reduce), with the failing rank's message, and the
# checkpoint of epoch 2 must load.
# Usage: failure.sh MPIRUN PROGRAM FOLDER [MPIRUN FLAGS...]
set -u
mpirun=$1 program=$2 folder=$3
shift 3
mkdir -p "$folder"
checkpoint=$folder/fail_midway.npz
rm -f "$checkpoint"
start=$(date +%s)
output=$(timeout 60 "$mpirun" "$@" -np 3 "$program" "$checkpoint" 2>&1)
status=$?
elapsed=$(( $(date +%s) - start ))
echo "$output" | tail -n 5
echo "mpirun exited with $status after ${elapsed} s"
[ "$status" -ne 0 ] || { echo "FAIL: the run did not fail"; exit 1; }
[ "$status" -ne 124 ] || { echo "FAIL: the ranks hung (killed after 60 s)"; exit 1; }
[ "$elapsed" -le 30 ] || { echo "FAIL: ending took ${elapsed} s"; exit 1; }
echo "$output" | grep -q "rank 1 of 3: deliberate failure at epoch 3, batch 2" ||
  { echo "FAIL: the failing rank's message is missing"; exit 1; }
"$program" --check "$checkpoint" || { echo "FAIL: the last checkpoint does not load"; exit 1; }
ls "$folder" | grep -q "tmp-" && { echo "FAIL: a temporary file was left"; exit 1; }
echo "PASS"
