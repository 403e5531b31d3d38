"""Per-step comparison of two next-token distributions (logits over the vocabulary)."""

from __future__ import annotations

import dataclasses

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x = x - x.max()
    return x - np.log(np.exp(x).sum())


@dataclasses.dataclass
class StepMetrics:
    """One position: the source's logits against the artifact's."""

    step: int
    max_error: float  # max |a - b|
    scale: float  # max |source logit|: the error is judged against it
    cosine: float
    top1: bool  # same argmax
    top5: bool  # the source's argmax is among the artifact's five best
    kl: float  # KL(source || artifact), nats

    @property
    def relative_error(self) -> float:
        return self.max_error / max(self.scale, 1e-12)

    def to_dict(self) -> dict:
        return {k: (round(v, 8) if isinstance(v, float) else v) for k, v in dataclasses.asdict(self).items()}


def compare_logits(step: int, source: np.ndarray, artifact: np.ndarray) -> StepMetrics:
    a, b = source.astype(np.float64).ravel(), artifact.astype(np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"vocabularies differ: {a.size} source logits, {b.size} artifact logits")
    if not np.all(np.isfinite(b)):
        return StepMetrics(step, float("inf"), float(np.abs(a).max()), 0.0, False, False, float("inf"))
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    cosine = float(a @ b / norm) if norm > 0 else float(np.array_equal(a, b))
    pa, lb = log_softmax(a), log_softmax(b)
    kl = float(np.sum(np.exp(pa) * (pa - lb)))
    best = int(a.argmax())
    return StepMetrics(step, float(np.abs(a - b).max()), float(np.abs(a).max()), cosine, best == int(b.argmax()),
                       best in np.argsort(-b)[:5], max(kl, 0.0))


def nll(logits: np.ndarray, token: int) -> float:
    """Negative log-likelihood of `token` under the logits (for perplexity)."""
    return float(-log_softmax(logits)[token])


def cache_error(source: list, artifact: list) -> dict:
    """The KV cache the artifact wrote against the source's: error/scale per layer (k and v), and
    the worst. Layer i's keys and values come out of layer i's projections, so the first layer
    whose cache departs says where an error enters the stack."""
    if len(source) != len(artifact):
        raise ValueError(f"{len(source)} source layers, {len(artifact)} artifact cache layers")
    layers = []
    for i, ((ks, vs), (ka, va)) in enumerate(zip(source, artifact)):
        errors = {}
        for name, s, a in (("k", ks, ka), ("v", vs, va)):
            if s.shape != a.shape:
                raise ValueError(f"layer {i} {name}: source cache {list(s.shape)}, artifact {list(a.shape)}")
            err = float(np.abs(s.astype(np.float64) - a).max()) if s.size else 0.0
            errors[name] = err / max(float(np.abs(s).max()) if s.size else 0.0, 1e-12)
        layers.append(errors)
    worst_layer, worst_kind = max(((i, k) for i in range(len(layers)) for k in ("k", "v")),
                                  key=lambda ik: layers[ik[0]][ik[1]])
    return {"relative_error": layers[worst_layer][worst_kind], "layer": f"{worst_layer}.{worst_kind}",
            "per_layer": [{k: round(v, 8) for k, v in e.items()} for e in layers]}


def first_departing_cache_layer(cache: dict, bound: float) -> int | None:
    """The first layer whose k or v error/scale is above `bound`."""
    return next((i for i, e in enumerate(cache.get("per_layer", [])) if max(e.values()) > bound), None)
