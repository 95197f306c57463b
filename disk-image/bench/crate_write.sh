#!/bin/bash
# Sequential write of 1 GiB through the crate (diskimg write) against qemu-img convert of
# the same raw data to the same format. Usage (from the workspace root, as root not needed):
#   cargo build -p disk-image --release --example diskimg
#   DISKIMG=$PWD/target/release/examples/diskimg disk-image/bench/crate_write.sh
set -e
D=$(realpath "${DISKIMG:-target/release/examples/diskimg}")
WORK=${WORK:-$(mktemp -d)}
cd "$WORK"
[ -f data.raw ] || yes "strata disk image benchmark line" | head -c 1G > data.raw
t() { local s=$(date +%s.%N); "$@"; local e=$(date +%s.%N); printf "%.2f" "$(echo "$e - $s" | bc)"; }
for fmt in vmdk vhdx; do
  rm -f a.$fmt b.$fmt
  $D create --format $fmt --size 1073741824 a.$fmt
  sync
  w1=$(t sh -c "$D write a.$fmt --offset 0 < data.raw")
  sync
  w2=$(t qemu-img convert -f raw -O $fmt data.raw b.$fmt)
  echo "$fmt: strata write ${w1}s, qemu-img convert ${w2}s"
done
