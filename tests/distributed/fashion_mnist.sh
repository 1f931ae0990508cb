#!/usr/bin/env bash
# fashion_mnist itself, data-parallel under mpirun with 2 processes: it must say so, train (the
# training loss falls from epoch 1 to epoch 3 and lies below a uniform guess's ln 10), and write
# its metrics from rank 0 only.
# Usage: fashion_mnist.sh MPIRUN PROGRAM FOLDER [MPIRUN FLAGS...]
set -u
mpirun=$1 program=$2 folder=$3
shift 3
mkdir -p "$folder"
csv=$folder/fashion_mnist_np2.csv
rm -f "$csv"
output=$(timeout 300 "$mpirun" "$@" -np 2 "$program" --limit 1200 --test-limit 300 --epochs 3 \
  --batch-size 60 --metrics-csv "$csv" 2>&1)
status=$?
echo "$output" | tail -n 8
[ "$status" -eq 0 ] || { echo "FAIL: mpirun exited with $status"; exit 1; }
echo "$output" | grep -q "2 processes (data-parallel)" || { echo "FAIL: not data-parallel"; exit 1; }
[ "$(echo "$output" | grep -c "^test accuracy")" -eq 1 ] ||
  { echo "FAIL: the result is not printed once (by rank 0)"; exit 1; }
[ -s "$csv" ] || { echo "FAIL: no metrics CSV"; exit 1; }
awk -F, 'NR == 2 { first = $2 } NR == 4 { last = $2 }
         END { exit !(NR == 4 && last < first && first < log(10)) }' "$csv" ||
  { echo "FAIL: the training loss did not fall below ln 10 and on:"; cat "$csv"; exit 1; }
echo "PASS"
