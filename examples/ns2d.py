"""CCM reproduction study: 2D vorticity Navier-Stokes on the torus, axis nu (log).

    python examples/ns2d.py --scale small          # 3 seeds on a CPU -> examples/results/ns2d/
    python examples/ns2d.py --scale quick --out /tmp/ns2d
    python examples/ns2d.py --scale paper --device cuda --out runs/ns2d

See neuralop_merge/study/ for the pipeline and the evaluation protocol.
"""

import sys

from neuralop_merge.study.script import main

if __name__ == "__main__":
    sys.exit(main("ns2d"))
