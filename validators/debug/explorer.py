"""Per-node errors in Model Explorer's node-data format (`model_explorer.node_data_builder`
GraphNodeData: results keyed by output tensor name, thresholds colouring the nodes), so the
candidate's graph can be opened in Model Explorer and coloured by how far each op is off."""

from __future__ import annotations

import json
from typing import Any

# colours by scaled max error: within tolerance, up to 100x it, beyond
_COLOURS = ("#a5d6a7", "#fff59d", "#ef9a9a")


def node_data(report: dict[str, Any]) -> dict[str, Any]:
    """GraphNodeData for the candidate: each paired op's scaled max error, keyed by its output
    tensor name (a tensor name LiteRT repeats keeps fwconv's '@index' suffix off)."""
    tolerance = report["tolerance"].get("scaled_max_err") or report["tolerance"]["identify_within"] / 100.0
    results = {}
    for pair in report["pairs"]:
        name = pair["candidate"]["tensor"].rsplit("@", 1)[0]
        value = pair.get("scaled_max_err")
        if value is not None:
            results[name] = {"value": max(value, results.get(name, {}).get("value", 0.0))}
    return {"name": "fwconv scaled max error", "results": results,
            "thresholds": [{"value": tolerance, "bgColor": _COLOURS[0]},
                           {"value": tolerance * 100, "bgColor": _COLOURS[1]},
                           {"value": 1e300, "bgColor": _COLOURS[2]}]}


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(node_data(report), indent=1)
