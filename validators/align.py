"""Pair the reference's inputs/outputs with the candidate's: names, order and layout.

Sources of truth, in order: the user's `--map`, the candidate's interface (fwconv.interface,
from its manifest or straight from the conversion: which source tensor each artifact tensor is and
how it was transposed), exact names, then position. A layout difference (NCHW vs NHWC) is only applied when one of those says so or
when the shapes leave no other reading, and every pairing is reported with how it was made.
Nothing is ever silently reshaped: shapes that do not fit are an error.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fwconv.errors import InputError

NCHW_TO_NHWC = (0, 2, 3, 1)
LAYOUT_PERMS = {"nhwc": NCHW_TO_NHWC, "nchw": None}


@dataclasses.dataclass
class Binding:
    reference: str
    candidate: str
    perm: tuple[int, ...] | None  # candidate = reference.transpose(perm)
    how: str

    def to_candidate(self, arr: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(arr.transpose(self.perm)) if self.perm else arr

    def to_reference(self, arr: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(arr.transpose(np.argsort(self.perm))) if self.perm else arr

    def to_dict(self) -> dict:
        return {"reference": self.reference, "candidate": self.candidate,
                "transpose": list(self.perm) if self.perm else None, "how": self.how}


def parse_map(texts) -> dict[str, tuple[str, tuple[int, ...] | None]]:
    """--map 'ref=cand' or 'ref=cand:nhwc' (candidate is the NHWC form of an NCHW reference)."""
    out = {}
    for text in texts or ():
        ref, sep, rest = text.partition("=")
        if not sep or not ref or not rest:
            raise InputError(f"bad --map '{text}': expected REF=CAND or REF=CAND:nhwc")
        cand, _, layout = rest.partition(":")
        if layout and layout.lower() not in LAYOUT_PERMS:
            raise InputError(f"bad --map '{text}': layout must be nhwc or nchw")
        out[ref] = (cand, LAYOUT_PERMS.get(layout.lower()) if layout else None)
    return out


def _shape_perm(ref_shape, cand_shape) -> tuple[tuple[int, ...] | None, str] | None:
    ref_shape, cand_shape = list(ref_shape), list(cand_shape)
    if _fits(ref_shape, cand_shape):
        return None, ""
    if len(ref_shape) == 4 and _fits([ref_shape[i] for i in NCHW_TO_NHWC], cand_shape):
        return NCHW_TO_NHWC, "; NCHW->NHWC inferred from shapes"
    return None


def _fits(a, b) -> bool:
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def bind(ref_names: list[str], ref_shapes: dict[str, list], cand_names: list[str], cand_shapes: dict[str, list],
         *, user_map=None, manifest_map=None, side: str = "input") -> list[Binding]:
    user_map = user_map or {}
    manifest_map = manifest_map or {}
    bindings: list[Binding] = []
    unused = list(cand_names)
    by_position = len(ref_names) == len(cand_names)
    for i, ref in enumerate(ref_names):
        perm: tuple[int, ...] | None = None
        if ref in user_map:
            cand, perm = user_map[ref]
            how = "--map"
        elif ref in manifest_map and manifest_map[ref][0] in cand_names:
            cand, perm = manifest_map[ref]
            how = "manifest"
        elif ref in cand_names:
            cand, how = ref, "same name"
        elif by_position and cand_names[i] in unused:
            cand, how = cand_names[i], "position"
        else:
            raise InputError(
                f"cannot pair reference {side} '{ref}' with a candidate {side} "
                f"(candidate has: {', '.join(cand_names)})", hint="say how with --map REF=CAND")
        if cand not in cand_names:
            raise InputError(f"--map names candidate {side} '{cand}', which does not exist "
                             f"(candidate has: {', '.join(cand_names)})")
        ref_shape, cand_shape = ref_shapes.get(ref), cand_shapes.get(cand)
        if ref_shape is not None and cand_shape is not None:
            if perm is not None:
                if not _fits([ref_shape[j] for j in perm], cand_shape):
                    raise InputError(f"{side} '{ref}' {list(ref_shape)} does not fit candidate '{cand}' "
                                     f"{list(cand_shape)} with transpose {list(perm)}")
            elif how in ("same name", "position"):
                found = _shape_perm(ref_shape, cand_shape)
                if found is None:
                    raise InputError(f"{side} '{ref}' has shape {list(ref_shape)} but candidate '{cand}' has "
                                     f"{list(cand_shape)}", hint="the models do not take the same tensors; see --map")
                perm, note = found
                how += note
            elif not _fits(ref_shape, cand_shape):
                raise InputError(f"{side} '{ref}' {list(ref_shape)} does not fit candidate '{cand}' {list(cand_shape)}")
        if cand in unused:
            unused.remove(cand)
        bindings.append(Binding(ref, cand, perm, how))
    if side == "input" and unused:
        raise InputError(f"candidate inputs not fed by any reference input: {', '.join(unused)}",
                         hint="say how with --map REF=CAND")
    return bindings
