#!/bin/sh
# containers-storage's workflow, as a user scripts it: layers, an image with names,
# metadata and big data, a container that is mounted, written and diffed, then deletes.
# Usage: cs_workflow.sh BINARY GRAPH RUN OUT TARS. It speaks only containers-storage's
# command line, so it runs unchanged against `containers-storage` and `strata`; each
# step's output goes to OUT/<step>.
set -eu
S="$1 --graph $2 --run $3 --storage-driver overlay"
out=$4
tars=$5
mkdir -p "$out"
first() { awk '{ print $1; exit }'; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

base=$($S import-layer -n base -f "$tars/base.tar" | first)
top=$($S create-layer -n top "$base" | first)
$S applydiff -f "$tars/top.tar" "$top"
$S create-image -n img -m first-meta "$top" > /dev/null
$S add-names -n img-alias img
$S get-names -j img > "$out/get-names.json"
$S set-image-data -f "$tars/item" img item
$S list-image-data -j img > "$out/list-image-data.json"
$S get-image-data img item > "$out/get-image-data"
$S set-metadata -m second-meta img
$S metadata -j img > "$out/metadata.json"
$S create-container -n ctr img > /dev/null
layer=$($S container -j ctr | field '[0]["layer"]')
mnt=$($S mount ctr)
echo written > "$mnt/written-by-the-container"
rm "$mnt/etc/from-base"
$S unmount ctr
$S changes -j "$layer" > "$out/changes.json"
$S diff -f "$out/ctr.tar" "$layer"
tar -tf "$out/ctr.tar" | sort > "$out/ctr.list"
$S layers -j > "$out/layers.json"
$S images -j > "$out/images.json"
$S containers -j > "$out/containers.json"
$S image -j img > "$out/image.json"
$S layer -j top > "$out/layer.json"
$S exists -j base img ctr > "$out/exists.json"
$S delete-container ctr
$S delete-image -j img > "$out/delete-image.json"
$S layers -j > "$out/layers-after.json"
