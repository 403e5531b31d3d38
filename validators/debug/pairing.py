"""Pair intermediate tensors across two models that compute the same function in different
frameworks (PyTorch FX, ONNX, TFLite, TF), and say how each pair was made.

1. Anchors: the same tensor name (same-framework pairs, or the ONNX exporter keeping FX names),
   the graphs' output bindings, and tensors whose values agree within a loose bound under a
   layout view (NCHW/NHWC transposes tried). Anchors must keep graph order (longest chain kept).
2. Between two anchors, where the later one is out of tolerance (a divergence lies between),
   the remaining tensors are aligned by shape and position (dynamic programming over the two
   sequences, the closer values winning). Where the later anchor agrees, tensors the candidate
   does not have were fused or rewritten away: they stay unpaired rather than guessed.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from typing import Callable

import numpy as np

from fwconv.validators.debug.views import Fingerprint, View, best_view, views
from fwconv.validators.runners.base import Intermediate

MAX_ALIGN_CELLS = 60_000  # a window larger than this is aligned by position only


@dataclasses.dataclass
class Pair:
    ref: int  # index into the reference's intermediates
    cand: int  # index into the candidate's
    view: View
    how: str
    error: float  # scaled max error under the view


def pair_intermediates(ref: list[Intermediate], cand: list[Intermediate], *, agrees: Callable[[Pair], bool],
                       loose: float, outputs: dict[int, int] | None = None) -> list[Pair]:
    """Pairs in reference order. `agrees(pair)` is the validator's verdict on a pair;
    `loose` is how far values may be apart (scaled) to identify a tensor by its values alone;
    `outputs` maps reference to candidate indices of the tensors the models return."""
    anchors = _in_order(_anchors(ref, cand, loose, outputs or {}))
    pairs = list(anchors)
    bounds = [(-1, -1)] + [(p.ref, p.cand) for p in anchors] + [(len(ref), len(cand))]
    closing = [None] + anchors + [None]
    for k in range(len(bounds) - 1):
        (r0, c0), (r1, c1) = bounds[k], bounds[k + 1]
        after = closing[k + 1]
        if r1 - r0 > 1 and c1 - c0 > 1 and (after is None or not agrees(after)):
            used = {p.cand for p in pairs}
            free = [j for j in range(c0 + 1, c1) if j not in used]
            pairs.extend(_align(ref, cand, list(range(r0 + 1, r1)), free))
    return sorted(pairs, key=lambda p: (p.ref, p.cand))


def _anchors(ref, cand, loose: float, outputs: dict[int, int]) -> list[Pair]:
    by_name = {c.tensor: j for j, c in enumerate(cand)}
    prints = [Fingerprint.of(c.value) for c in cand]
    found = []
    for i, r in enumerate(ref):
        j, how = outputs.get(i), "output binding"
        if j is None and r.tensor in by_name and views(r.value.shape, cand[by_name[r.tensor]].value.shape):
            j, how = by_name[r.tensor], "same name"
        if j is not None:
            view, err = best_view(r.value, cand[j].value) or (View(), float("inf"))
            found.append(Pair(i, j, view, how, err))
            continue
        match = _value_match(r, cand, prints, loose)
        if match:
            found.append(Pair(i, match[0], match[1], "values", match[2]))
    return found


def _value_match(r: Intermediate, cand, prints, loose: float):
    """The candidate tensor holding (nearly) the same values, the closest one winning."""
    mine = Fingerprint.of(r.value)
    best = None
    for j, fp in enumerate(prints):
        if not mine.may_match(fp, loose):
            continue
        found = best_view(r.value, cand[j].value)
        if found and found[1] <= loose and (best is None or found[1] < best[2]):
            best = (j, found[0], found[1])
    return best


def _in_order(anchors: list[Pair]) -> list[Pair]:
    """The longest chain of anchors whose candidate positions never go backwards (several
    reference tensors may hold one candidate tensor: a reshape keeps the values)."""
    tails: list[int] = []  # candidate index ending the best chain of each length
    ends: list[int] = []  # anchor index ending it
    parent = [-1] * len(anchors)
    for k, a in enumerate(anchors):
        pos = bisect.bisect_right(tails, a.cand)
        parent[k] = ends[pos - 1] if pos else -1
        if pos == len(tails):
            tails.append(a.cand)
            ends.append(k)
        else:
            tails[pos], ends[pos] = a.cand, k
    chain, k = [], ends[-1] if ends else -1
    while k >= 0:
        chain.append(anchors[k])
        k = parent[k]
    return chain[::-1]


def _kind(op_type: str) -> str:
    """'aten.conv2d.default', 'Conv', 'CONV_2D', 'Conv2D' -> 'conv'; for a small bonus when the
    op kinds on both sides agree."""
    word = re.sub(r"^(aten|torch|tf|tfl)\.", "", op_type.lower()).split(".")[0]
    return re.sub(r"[^a-z]", "", word)[:4]


def _align(ref, cand, rows: list[int], cols: list[int]) -> list[Pair]:
    """Order-keeping alignment of reference tensors with candidate tensors of a fitting shape,
    maximising the number of pairs, then closeness of values, then agreeing op kinds."""
    if not rows or not cols:
        return []
    if len(rows) * len(cols) > MAX_ALIGN_CELLS:
        cols = cols[: max(1, MAX_ALIGN_CELLS // len(rows))]
    score = {}
    for a, i in enumerate(rows):
        for b, j in enumerate(cols):
            found = best_view(ref[i].value, cand[j].value)
            if found:
                bonus = 0.2 if _kind(ref[i].op_type) == _kind(cand[j].op_type) else 0.0
                score[a, b] = (1.0 + 0.5 * (1.0 - min(found[1], 1.0)) + bonus, found)
    n, m = len(rows), len(cols)
    best = np.zeros((n + 1, m + 1))
    for a in range(n - 1, -1, -1):
        for b in range(m - 1, -1, -1):
            take = score[a, b][0] + best[a + 1, b + 1] if (a, b) in score else -1.0
            best[a, b] = max(best[a + 1, b], best[a, b + 1], take)
    pairs, a, b = [], 0, 0
    while a < n and b < m:
        if (a, b) in score and best[a, b] == score[a, b][0] + best[a + 1, b + 1]:
            view, err = score[a, b][1]
            pairs.append(Pair(rows[a], cols[b], view, "shape and position", err))
            a, b = a + 1, b + 1
        elif best[a, b] == best[a + 1, b]:
            a += 1
        else:
            b += 1
    return pairs
