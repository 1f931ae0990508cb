#!/usr/bin/env bash
# The data-parallel equality test across two "hosts": two network namespaces joined by a veth
# pair (scripts/netns-hosts), the ranks alternating between them, so that they reach each other
# only over TCP on that link, as between machines. 2 and 3 processes. Skipped (status 77) where
# network namespaces cannot be made.
# Usage: two_hosts.sh PROGRAM
set -u
program=$1
here=$(cd "$(dirname "$0")/../.." && pwd)
name=adt$$
"$here/scripts/netns-hosts" up "$name" || exit $?
trap '"$here/scripts/netns-hosts" down "$name"' EXIT
for np in 2 3; do
  echo "== $np processes on two hosts"
  timeout 240 "$here/scripts/netns-hosts" mpirun "$name" -np "$np" \
    -x OPENBLAS_NUM_THREADS=1 -x OMP_NUM_THREADS=1 -x ASAN_OPTIONS=detect_leaks=0 \
    sh -c 'echo "rank $OMPI_COMM_WORLD_RANK on $(ip -4 -o addr | grep -o "inet 10\.213\.[0-9.]*")"; exec "$0" --log_level=message' \
    "$program" || { echo "FAIL with $np processes"; exit 1; }
done
echo "PASS"
