"""CCM reproduction study: 2D FitzHugh-Nagumo diffusion-reaction, axis Du (log).

    python examples/diffreact.py                     # the committed results: 5 seeds -> examples/results/diffreact/
    python examples/diffreact.py --scale quick --out /tmp/diffreact
    python examples/diffreact.py --scale paper --device cuda --out runs/diffreact

Each finished seed is saved under <out>/records/ at once; running the same command again resumes
(or, when every seed is done, only redraws the report). See neuralop_merge/study/ for the protocol.
"""

import sys

from neuralop_merge.study.script import main

if __name__ == "__main__":
    sys.exit(main("diffreact"))
