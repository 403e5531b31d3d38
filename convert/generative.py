"""A language model directory -> a generator artifact, proven token by token.

The generative counterpart of pipeline.py (whose reference run feeds fixed inputs through one
call): read the directory's declarations and refuse what cannot work before anything loads, run
the exporter in scratch, validate the artifact with the generative validator
(fwconv.validators.generative), write the manifest with the generative contract, and publish
atomically. Like pipeline.py, this module asks the validators for a verdict; nothing else in
fwconv.convert does.
"""

from __future__ import annotations

import os
import shutil
import time

from fwconv.convert.job import Job
from fwconv.errors import InputError, ParityError
from fwconv.manifest import Manifest, manifest_path, sha256_of, size_of
from fwconv.models.formats import Source
from fwconv.staging import protected_paths, scratch_dir, staged_outputs

TARGETS = ("tflite", "litertlm", "pte", "onnx")


def convert_generative(source: Source, target: str, output: str, options):
    """Export `source` (a causal LM directory) to `target` at `output`; returns ConversionResult."""
    from fwconv.convert.edges.hf_to_litert import GenerativePlan
    from fwconv.convert.pipeline import ConversionResult
    from fwconv.models.hf import read_hf_dir

    model_dir = read_hf_dir(source.path, trust_pickle=options.trust_pickle)
    if not model_dir.is_causal_lm:
        kinds = ", ".join(model_dir.architectures) or "no architectures"
        raise InputError(f"{source.path} is a {model_dir.model_type} model ({kinds}): fwconv converts causal "
                         "language models from a model directory")
    if target not in TARGETS:
        raise InputError(f"a language model directory converts to {' or '.join(TARGETS)} here, not {target}")
    if model_dir.tokenizer is None:
        raise InputError(f"{source.path} has no tokenizer (tokenizer.json)", hint="save it beside the model")
    plan = GenerativePlan.from_options(model_dir, options, target)
    _check_before_export(model_dir, plan, options)
    t0 = time.perf_counter()
    finals = [output, manifest_path(output)] + _sidecar_paths(model_dir, target, output)
    with staged_outputs(finals, force=options.force, protected=protected_paths(source.path)) as temps, \
            scratch_dir() as workdir:
        job = Job(options=options, workdir=workdir, sample={})
        artifact = _export(model_dir, plan, job, target, output)
        report = _validate(source.path, artifact, job, options) if options.validate else None
        for final in finals[2:]:
            shutil.move(os.path.join(workdir, os.path.basename(final)), temps[final])
        shutil.move(artifact.path, temps[output])
        artifact.path = temps[output]
        manifest = _manifest(source, target, output, artifact, job, report, time.perf_counter() - t0)
        manifest.write(temps[manifest_path(output)])
        failed = report is not None and not report.parity_passed
        if failed and not options.keep_failed:
            raise _parity_error("artifact not written", report)
    if failed:
        raise _parity_error("kept by --keep-failed", report)
    return ConversionResult(output, manifest, report)


def _sidecar_paths(model_dir, target: str, output: str) -> list[str]:
    """Files a target writes beside the artifact (ONNX: onnxruntime-genai's config and the tokenizer)."""
    if target != "onnx":
        return []
    from fwconv.convert.edges.hf_to_onnx import sidecars

    return [os.path.join(os.path.dirname(os.path.abspath(output)), n) for n in sidecars(model_dir)]


def _export(model_dir, plan, job: Job, target: str, output: str):
    """The target's exporter, run in the job's scratch folder: an Artifact with its generative contract."""
    if target == "pte":
        from fwconv.convert.edges.hf_to_pte import export_pte

        return export_pte(model_dir, plan, job, os.path.join(job.workdir, "model.pte"))
    if target == "onnx":
        from fwconv.convert.edges.hf_to_onnx import export_onnx

        return export_onnx(model_dir, plan, job, os.path.join(job.workdir, os.path.basename(output)))
    from fwconv.convert.edges.hf_to_litert import artifact_for, export_litert

    return artifact_for(export_litert(model_dir, plan, job, bundle=target == "litertlm"), target, model_dir, plan)


def _check_before_export(model_dir, plan, options) -> None:
    """What would fail only after the export, said first: the side files, a config transformers
    knows, the tokenizer, the prompts' room in the cache, the memory."""
    from fwconv.models.hf import check_memory, check_side_files, load_config
    from fwconv.validators.generative import GenerativeSettings, check_prompts

    check_side_files(model_dir)
    load_config(model_dir, trust_remote_code=options.trust_remote_code)
    if options.validate:
        check_prompts(model_dir.path, GenerativeSettings.from_options(options), plan.cache_length)
    check_memory(model_dir)


def _validate(source_dir: str, artifact, job: Job, options):
    from fwconv.validators.generative import GenerativeSettings, validate_generative

    settings = GenerativeSettings.from_options(options)
    with job.stage("validate:generative"):
        return validate_generative(source_dir, artifact.path, settings, contract=artifact.extra["generative"])


def _manifest(source: Source, target: str, output: str, artifact, job: Job, report, seconds: float) -> Manifest:
    extra = {k: v for k, v in artifact.extra.items() if k != "tflite_in_bundle"}
    return Manifest(
        artifact=os.path.abspath(output), format=target,
        source={"path": os.path.abspath(source.path), "format": source.format,
                "sha256": sha256_of(source.path)},
        route=["hf", target], tools=artifact.tools, inputs=artifact.inputs, outputs=artifact.outputs,
        size_bytes=size_of(artifact.path), sha256=sha256_of(artifact.path),
        stages=[{"stage": s.stage, "status": s.status, "seconds": s.seconds, "detail": s.detail} for s in job.stages]
        + [{"stage": "total", "status": "ok", "seconds": round(seconds, 3)}],
        notes=artifact.notes + (report.notes if report else []), extra=extra,
        validation=report.to_dict() if report is not None else None)


def _parity_error(what: str, report) -> ParityError:
    return ParityError(f"the language model artifact does not behave like the source ({what}): "
                       + report.failure_line(), report=report)
