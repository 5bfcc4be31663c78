#!/usr/bin/env bash
# Makes bench/gpu_suite.sh self-sufficient on a GPU machine that cannot reach a package registry
# (its image has PyTorch with CUDA, Lightning, sacreBLEU and SentencePiece, not jsonargparse):
# run here, where pip works, from the repository root with .venv installed:
#   .whl/          wheels of the dependencies that image lacks (CPython 3.12, manylinux x86-64)
#   .gpu/multi30k  the Multi30k files (SEQ2SEQ_MULTI30K_DIR)
#   data/          the reference config's tokenizer and encoded corpus, prepared here
# then carry .whl, .gpu and data to the GPU machine (all three are git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
: "${SEQ2SEQ_MULTI30K_DIR:?point SEQ2SEQ_MULTI30K_DIR at the Multi30k files}"
rm -rf .whl && mkdir -p .whl .gpu
$PYTHON -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux2014_x86_64 -d .whl \
  jsonargparse docstring-parser typeshed-client importlib-resources
rm -rf .gpu/multi30k && cp -r "$SEQ2SEQ_MULTI30K_DIR" .gpu/multi30k
$PYTHON -m seq2seq.cli prepare --config configs/multi30k_de_en.yaml > /dev/null
du -sh .whl .gpu data
