#!/usr/bin/env bash
# What a lent GPU machine (the device tool's nvidia-h200 image: Python 3.12, torch, transformers, no registry) lacks
# for scripts/train_gpu.py, in two git-ignored folders to carry with the call: .whl/ (the diffusers wheel this
# project pins) and .gpu/fonts/ (the toy world's ten fonts, read there through OPENKONTEXT_FONT_DIRS).
# Then, on the machine: see docs/training.md, "GPU stretches".
set -euo pipefail
cd "$(dirname "$0")/.."
for folder in /.whl/ /.gpu/; do
  grep -qx "$folder" .git/info/exclude 2>/dev/null || echo "$folder" >> .git/info/exclude
done
diffusers=$(python3 -c "import re; print(re.search(r'\"(diffusers==[^\"]+)\"', open('pyproject.toml').read())[1])")
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 -d .whl "$diffusers"
mkdir -p .gpu/fonts
python3 - <<'PY'
import shutil
from openkontext.toyworld.text import check_fonts
for path in check_fonts():
    shutil.copy(path, ".gpu/fonts/")
PY
du -sh .whl .gpu
