"""Layer by layer on the prefill graph: where a failing generative artifact first departs.

The source gives every decoder layer's output (transformers' `output_hidden_states`); the
artifact's prefill signature runs in an interpreter that keeps every tensor, and each source
layer output is paired with the artifact tensor of the same size that is closest to it on the
prompt's positions (the padded positions are ignored). The first layer whose best partner is
still off names where the error enters, as fwconv's layerwise debugger does for other models.
"""

from __future__ import annotations

import numpy as np


def artifact_tensors(tflite: str, signature: str, feed: dict, size: int) -> list[tuple[str, np.ndarray]]:
    """(name, value) of every float tensor of `size` elements the signature's subgraph computed."""
    from fwconv.models.tflite import open_interpreter

    interpreter = open_interpreter(tflite, 1, keep_intermediates=True)
    runner = interpreter.get_signature_runner(signature)
    runner(**feed)
    subgraph = runner._subgraph_index  # the signature's own subgraph (prefill and decode are separate)
    found = []
    for d in interpreter.get_tensor_details(subgraph):
        if d["dtype"] == np.float32 and int(np.prod(d["shape"])) == size:
            try:
                found.append((d["name"], np.array(interpreter.get_tensor(d["index"], subgraph))))
            except ValueError:  # a tensor without data (freed, or not computed)
                continue
    return found


def first_diverging_layer(model, generator, prompt: list[int], bound: float) -> dict | None:
    """Each decoder layer's output against its closest artifact tensor; the first above `bound`
    (error / max |source|). `generator` is the artifact's LiteRTGenerator (its prefill feed)."""
    import torch

    head = prompt[:-1]
    if not head:
        return None
    size = min(n for n in generator.prefill if n >= len(head))
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor([head]), output_hidden_states=True).hidden_states
    width = hidden[0].shape[-1]
    feed = generator.prefill_feed(head, size)
    candidates = [(name, value.reshape(-1, width)[: len(head)].astype(np.float64))
                  for name, value in artifact_tensors(generator.path, generator.prefill[size], feed, size * width)]
    if not candidates:
        return None
    layers = []
    # hidden[i + 1] is decoder layer i's output; transformers gives the last layer's only after the final norm
    named = [(i, states) for i, states in enumerate(hidden[1:-1])] + [("final norm", hidden[-1])]
    for i, states in named:
        want = states[0].double().numpy()
        scale = max(float(np.abs(want).max()), 1e-12)
        name, err = min(((n, float(np.abs(v - want).max()) / scale) for n, v in candidates), key=lambda t: t[1])
        layers.append({"layer": i, "error": round(err, 8), "artifact_tensor": name})
    first = next((entry["layer"] for entry in layers if entry["error"] > bound), None)
    return {"first_diverging_layer": first, "bound": bound, "layers": layers}
