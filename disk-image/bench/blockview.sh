#!/bin/bash
# Needs root, FUSE, loop devices, qemu-img and qemu-storage-daemon. Usage from the
# workspace root: cargo build -p disk-image --release --example diskimg; then
#   DISKIMG=$PWD/target/release/examples/diskimg disk-image/bench/blockview.sh
# Block view vs qemu-storage-daemon FUSE export, both loop-attached: dd 1 GiB in and out.
set -e
D=$(realpath "${DISKIMG:-target/release/examples/diskimg}")
WORK=${WORK:-$(mktemp -d)}
cd "$WORK"
[ -f data.raw ] || yes "strata disk image benchmark line" | head -c 1G > data.raw
t() { local s=$(date +%s.%N); "$@" 2>/dev/null; local e=$(date +%s.%N); printf "%.2f" "$(echo "$e - $s" | bc)"; }
for fmt in vmdk vhdx; do
  rm -f s.$fmt q.$fmt
  $D create --format $fmt --size 2147483648 s.$fmt
  $D attach s.$fmt > dev.txt & apid=$!
  for i in $(seq 50); do [ -s dev.txt ] && break; sleep 0.1; done
  dev=$(cat dev.txt)
  w=$(t dd if=data.raw of=$dev bs=1M oflag=direct conv=fsync)
  echo 3 > /proc/sys/vm/drop_caches
  r=$(t dd if=$dev of=/dev/null bs=1M count=1024 iflag=direct)
  kill -TERM $apid; wait $apid
  echo "strata block view $fmt: write ${w}s read ${r}s"

  qemu-img create -f $fmt q.$fmt 2G >/dev/null
  rm -f export; touch export
  qemu-storage-daemon --blockdev driver=file,node-name=file,filename=q.$fmt \
    --blockdev driver=$fmt,node-name=disk,file=file \
    --export type=fuse,id=exp,node-name=disk,mountpoint=export,writable=on & qpid=$!
  for i in $(seq 50); do mount | grep -q "$WORK/export" && break; sleep 0.1; done
  qdev=$(losetup --find --show export)
  w=$(t dd if=data.raw of=$qdev bs=1M oflag=direct conv=fsync)
  echo 3 > /proc/sys/vm/drop_caches
  r=$(t dd if=$qdev of=/dev/null bs=1M count=1024 iflag=direct)
  losetup -d $qdev
  kill -TERM $qpid; wait $qpid || true
  echo "qemu-storage-daemon fuse $fmt: write ${w}s read ${r}s"
done
