"""The ablations of the CCM study, one per call; each writes examples/results/ablations/<name>/.

    python examples/ablations.py prefix_budget                 # seeds 0 1 2, every family
    python examples/ablations.py direction_stability --seed 0  # one seed
    python examples/ablations.py pushforward --scale small16x2 --jobs 2   # seeds run in 2 processes
    python examples/ablations.py ccm_plane --set n_test=2 --out /tmp/plane   # a smoke run
    python examples/ablations.py ccm_plane --redraw            # its figures again, from results.json

Names: direction_stability, prefix_budget, scale_trend, fixed_alpha_frontier, calibration_bank,
strong_baselines, ccm_plane, multi_axis, endpoint_modes, pushforward, expert_replay, prefix_scan. Trained models and simulated
data are kept in examples/results/ablations/.cache (git-ignored), so the ablations train each seed's
merge line once. See neuralop_merge/study/ablations/ for what each one measures.
"""

import sys

from neuralop_merge.study.ablations.script import main

if __name__ == "__main__":
    sys.exit(main())
