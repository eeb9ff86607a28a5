"""exact_match and its aggregation, as lm-eval computes them for the gsm8k task.

`exact_match` mirrors `lm_eval.api.metrics.exact_match_hf_evaluate` with the task's metric
kwargs: each of `regexes_to_ignore` is removed (`re.sub(r, "", x)`, in order) from both the
prediction and the reference, then both are lower-cased (`ignore_case: true`) and compared.
`mean` and `mean_stderr` are lm-eval's own formulas, evaluated in the same order so that the
floating-point results are bit-identical (stderr is "N/A", here None, for fewer than two items).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

#: `regexes_to_ignore` of the task's exact_match metric, applied in this order.
REGEXES_TO_IGNORE: tuple[str, ...] = (",", r"\$", r"(?s).*#### ", r"\.$")
IGNORE_CASE = True

_COMPILED = tuple(re.compile(pattern) for pattern in REGEXES_TO_IGNORE)


def normalize(text: str) -> str:
    """Apply the metric's normalisation (regex removals, then lower-casing) to one string."""
    for regex in _COMPILED:
        text = regex.sub("", text)
    return text.lower() if IGNORE_CASE else text


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the normalised prediction equals the normalised reference, else 0.0."""
    return 1.0 if normalize(prediction) == normalize(reference) else 0.0


def mean(values: Sequence[float]) -> float:
    """lm-eval's `mean` aggregation: `sum(arr) / len(arr)`."""
    return sum(values) / len(values)


def mean_stderr(values: Sequence[float]) -> float | None:
    """lm-eval's `mean_stderr` (sample stddev with n-1, over sqrt(n)); None when n < 2 ("N/A")."""
    if len(values) < 2:
        return None
    mu = mean(values)
    sample_stddev = math.sqrt(sum([(x - mu) ** 2 for x in values]) / (len(values) - 1))
    return sample_stddev / math.sqrt(len(values))
