"""How far any forecaster could go on the synthetic forecasting workloads: forecasters that know what
the others can only estimate, scored like bench_forecast's live part (p90 q-error of the next interval).

For each workload and seed: "last interval" (the naive baseline); "knows each statement": its true
level, sensitivity to load and growth, with the server's load assumed to stay where it was; "and
the next load": the same with the expected next load (switches: the mean of the level that follows
each level, over the whole series; growth: the load's random walk, whose expectation is where it
is; cycle: the load of the next phase, which a known cycle tells exactly). What remains is the
sampling noise of the interval forecast and, on switches, the switch itself. No database needed:
``python bench/forecast_bounds.py --seeds 1 2 3 4 5 6``.
"""

from __future__ import annotations

import argparse
import math

import forecast_workloads as fw
import numpy as np

from benchlib import print_table


def p90(predicted_log: np.ndarray, actual_log: np.ndarray) -> float:
    return float(np.exp(np.percentile(np.abs(predicted_log - actual_log), 90)))


def bounds(shape: str, seed: int, statements: int, train: int, live: int) -> list:
    w = fw.make(shape, statements, train, live, seed)
    x = np.log(w.means)
    t = np.arange(len(x))
    log_load = np.log(w.load)
    planted = np.zeros_like(x)
    for i, onset in w.planted.items():
        planted[onset:, i] = math.log(5.0)
    level, sensitivity, growth = (w.truth[k] for k in ("level", "sensitivity", "growth"))
    trend = 0.03 * t[:, None] * growth[None, :] if shape == "growth" else 0.0
    known = np.log(level)[None, :] + trend + planted

    def expected(load_log: np.ndarray) -> np.ndarray:
        return known + sensitivity[None, :] * load_log[:, None]

    live_rows = slice(train, train + live)
    previous = np.concatenate([[log_load[0]], log_load[:-1]])
    if shape == "switches":
        follows = {v: log_load[1:][log_load[:-1] == v].mean() for v in np.unique(log_load[:-1])}
        nxt = np.array([follows.get(v, v) for v in previous])
    elif shape == "cycle":
        nxt = log_load
    else:
        nxt = previous
    last = np.vstack([x[:1], x[:-1]])
    naive = p90(last[live_rows], x[live_rows])
    persist = p90(expected(previous)[live_rows], x[live_rows])
    ahead = p90(expected(nxt)[live_rows], x[live_rows])
    return [
        shape,
        seed,
        f"{naive:.3f}",
        f"{persist:.3f} ({1 - persist / naive:.0%})",
        f"{ahead:.3f} ({1 - ahead / naive:.0%})",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    parser.add_argument("--shapes", default=",".join(fw.SHAPES))
    parser.add_argument("--statements", type=int, default=120)
    parser.add_argument("--train", type=int, default=60)
    parser.add_argument("--live", type=int, default=40)
    args = parser.parse_args()
    rows = [
        bounds(shape, seed, args.statements, args.train, args.live)
        for shape in args.shapes.split(",")
        for seed in args.seeds
    ]
    print("\nLive p90 q-error of forecasters that know the workload's hidden parameters (better than last)\n")
    print_table(["workload", "seed", "last interval", "knows each statement", "and the next load"], rows)


if __name__ == "__main__":
    main()
