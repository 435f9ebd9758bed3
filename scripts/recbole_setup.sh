#!/usr/bin/env bash
# Create the separate RecBole 1.2.1 environment used by scripts/recbole_run.py.
#
#   bash scripts/recbole_setup.sh [VENV_DIR]     (default: ../recbole-venv, beside the repo)
#
# It is kept apart from marquee's own .venv because RecBole 1.2.1 needs numpy<2, pandas<2.3 and
# old pins (colorlog==4.7.2, colorama==0.4.4) that marquee does not want. Never commit the venv.
#
# Workarounds baked in here (see also scripts/recbole_run.py):
#  - torch is pinned to 2.13.0: that exact release is the CPU build already on this machine's disk
#    (found through pip's find-links); an unpinned torch would pull a multi-GB CUDA build.
#  - recbole is installed with --no-deps and its requirements are listed below by hand, WITHOUT ray
#    (recbole 1.2.1 requires ray<=2.6.3, but ray is only imported by recbole.quick_start and
#    recbole.trainer.hyper_tuning, which our runner never imports; ray is large and unneeded).
#    `pip check` will therefore report "recbole 1.2.1 requires ray" -- expected.
#  - numpy<2: recbole 1.2.1 uses np.float / np.int-era code paths and its dataset code predates numpy 2.
#  - pandas<2.3: recbole's atomic-file reader and feature code are known to work with pandas 2.0-2.2.
#  - setuptools: NOT pinned <70. torch 2.13.0 itself requires setuptools>=77.0.3, so a setuptools<70
#    pin makes pip quietly backtrack to torch 2.12.1 from PyPI -- the multi-GB CUDA build. (The <70
#    pin was for old torch.utils.tensorboard, which read distutils' LooseVersion through setuptools;
#    torch 2.13's tensorboard module no longer does, and the smoke test below imports it.)
#  - every install after torch runs under a constraints file holding torch==2.13.0, so no later
#    requirement (thop, tensorboard, ...) can swap the CPU torch for another build.
set -euo pipefail

VENV="${1:-$(cd "$(dirname "$0")/../.." && pwd)/recbole-venv}"
PY="${PYTHON:-python3.11}"

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIN="$(mktemp)"
trap 'rm -f "$PIN"' EXIT
echo "torch==2.13.0" >"$PIN"

"$VENV/bin/python" -m pip install -q --upgrade "pip<25" wheel
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
"$VENV/bin/python" -m pip install -q -c "$PIN" \
  "numpy<2" "pandas<2.3" "scipy<1.14" "scikit-learn<1.6" "tqdm>=4.48.2" \
  "colorlog==4.7.2" "colorama==0.4.4" "pyyaml>=5.1" "tensorboard>=2.5" "thop>=0.1.1.post2207130030" \
  "tabulate>=0.8.10" "plotly>=4.0" "texttable>=0.9" "psutil>=5.9"
"$VENV/bin/python" -m pip install -q --no-deps "recbole==1.2.1"

# smoke test: the modules the runner uses import, without ray
"$VENV/bin/python" - <<'EOF'
import numpy, pandas, scipy, torch
import recbole
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, get_trainer, init_seed, init_logger
from torch.utils.tensorboard import SummaryWriter  # recbole.utils needs it; tensorboard must import
assert torch.__version__.startswith("2.13.0") and "+cpu" in torch.__version__, torch.__version__
assert not torch.cuda.is_available()
print(f"recbole {recbole.__version__}, torch {torch.__version__}, numpy {numpy.__version__}, "
      f"pandas {pandas.__version__}, scipy {scipy.__version__}")
EOF
