"""CCM reproduction study: 2D shallow-water radial dam break, axis h_in (linear).

    python examples/dam_break.py                     # the committed results: 5 seeds -> examples/results/dam_break/
    python examples/dam_break.py --scale quick --out /tmp/dam_break
    python examples/dam_break.py --scale paper --device cuda --out runs/dam_break

Each finished seed is saved under <out>/records/ at once; running the same command again resumes
(or, when every seed is done, only redraws the report). See neuralop_merge/study/ for the protocol.
"""

import sys

from neuralop_merge.study.script import main

if __name__ == "__main__":
    sys.exit(main("dam_break"))
