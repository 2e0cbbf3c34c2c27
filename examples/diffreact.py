"""CCM reproduction study: 2D FitzHugh-Nagumo diffusion-reaction, axis Du (log).

    python examples/diffreact.py --scale small          # 3 seeds on a CPU -> examples/results/diffreact/
    python examples/diffreact.py --scale quick --out /tmp/diffreact
    python examples/diffreact.py --scale paper --device cuda --out runs/diffreact

See neuralop_merge/study/ for the pipeline and the evaluation protocol.
"""

import sys

from neuralop_merge.study.script import main

if __name__ == "__main__":
    sys.exit(main("diffreact"))
