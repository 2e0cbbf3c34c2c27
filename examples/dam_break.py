"""CCM reproduction study: 2D shallow-water radial dam break, axis h_in (linear).

    python examples/dam_break.py --scale small          # 3 seeds on a CPU -> examples/results/dam_break/
    python examples/dam_break.py --scale quick --out /tmp/dam_break
    python examples/dam_break.py --scale paper --device cuda --out runs/dam_break

See neuralop_merge/study/ for the pipeline and the evaluation protocol.
"""

import sys

from neuralop_merge.study.script import main

if __name__ == "__main__":
    sys.exit(main("dam_break"))
