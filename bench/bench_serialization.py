"""Stored model size and load time per model type: pickle (as 0.2.0 stored models) against joblib.

Each model is the estimator pgml_train stores (pganalytics_ml.forecasting.training.ResidualModel around
make_estimator's), fitted on synthetic features of the training set's width at 10k and 100k samples.
"Load" is what a backend does once per model (models.load, then cached): bytes to a ready estimator,
median of 7 runs, after one warm-up. Both formats are read from and written to memory (the bytea).
The signed envelope around the bytes is the same for both and is not timed.

Why pganalytics_ml stores pickles: joblib's gains are for files (memory-mapped arrays, compression); in
memory its bytes are as large and its loads slower, since its unpickler is Python's pure-Python one.
"""

from __future__ import annotations

import io
import pickle
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python_pkg"))
from benchlib import median_ms, print_table
from pganalytics_ml.forecasting import features, training

SIZES = (10_000, 100_000)
RUNS = 7


def fitted(model_type: str, n: int) -> Any:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, len(features.FEATURE_NAMES)))
    y = x[:, :5] @ rng.normal(size=5) + rng.normal(scale=0.3, size=n)
    return training.ResidualModel(training.make_estimator(model_type, n), 0.5).fit(x, y)


def as_pickle(estimator: Any) -> bytes:
    return pickle.dumps(estimator, protocol=pickle.HIGHEST_PROTOCOL)


def as_joblib(estimator: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    return buffer.getvalue()


def main() -> None:
    rows = []
    for n in SIZES:
        for model_type in training.MODEL_TYPES:
            print(f"{model_type} at {n} samples", file=sys.stderr)
            estimator = fitted(model_type, n)
            pickled, dumped = as_pickle(estimator), as_joblib(estimator)
            pickle.loads(pickled), joblib.load(io.BytesIO(dumped))
            pickle_ms, _ = median_ms(lambda b=pickled: pickle.loads(b), RUNS)
            joblib_ms, _ = median_ms(lambda b=dumped: joblib.load(io.BytesIO(b)), RUNS)
            rows.append(
                [model_type, n, len(pickled) / 1024, len(dumped) / 1024, pickle_ms, joblib_ms, joblib_ms / pickle_ms]
            )
    print("### Stored model: pickle against joblib\n")
    print_table(
        ["model type", "samples", "pickle KiB", "joblib KiB", "pickle load ms", "joblib load ms", "joblib/pickle"],
        rows,
    )


if __name__ == "__main__":
    main()
