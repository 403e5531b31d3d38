"""The conversion's options are fwconv.options.Options (declared once, for every door: CLI,
gate, API, plugin), checked and normalised on construction: `--fp16` is `quantize="fp16"`,
the --dynamic words become DynamicDims, --input-shape/--input-dtype become `input_specs`;
contradictions and missing calibration are one InputError (exit 2) before any model loads.
`ConvertOptions` is the name the conversion wing knows it by."""

from __future__ import annotations

from fwconv.options import Options

ConvertOptions = Options

__all__ = ["ConvertOptions"]
