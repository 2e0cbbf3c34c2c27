"""CCM reproduction study: 2D vorticity Navier-Stokes on the torus, axis nu (log).

    python examples/ns2d.py                     # the committed results: 5 seeds -> examples/results/ns2d/
    python examples/ns2d.py --scale quick --out /tmp/ns2d
    python examples/ns2d.py --scale paper --device cuda --out runs/ns2d

Each finished seed is saved under <out>/records/ at once; running the same command again resumes
(or, when every seed is done, only redraws the report). See neuralop_merge/study/ for the protocol.
"""

import sys

from neuralop_merge.study.script import main

if __name__ == "__main__":
    sys.exit(main("ns2d"))
