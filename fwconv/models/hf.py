"""A Hugging Face model directory (`save_pretrained`): read without running code, loaded offline.

What is read before anything loads: `config.json` (plain JSON), the safetensors headers (names,
dtypes, shapes; their size is the weights' size), the tokenizer files. A directory whose weights
are only pickled (`pytorch_model.bin`) is refused unless --trust-pickle; `trust_remote_code`
(custom modelling code shipped in the directory) needs its own flag; nothing is ever downloaded
(`local_files_only`, HF_HUB_OFFLINE).
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct

from fwconv.errors import InputError, require
from fwconv.quiet import captured_output

CONFIG = "config.json"
GENAI_CONFIG = "genai_config.json"  # onnxruntime-genai's description of an ONNX generator folder
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
SAFETENSORS_HEADER_MAX = 100 * 1024 * 1024  # a header larger than this is not a weights file
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
               "F8_E4M3": 1, "F8_E5M2": 1}


def is_hf_dir(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, CONFIG))


@dataclasses.dataclass
class HfModelDir:
    """What a model directory declares, read without loading it."""

    path: str
    config: dict
    weights: list[str]  # safetensors files (or pickled .bin files where trusted)
    weight_bytes: int
    tokenizer: str | None  # the tokenizer file found

    @property
    def model_type(self) -> str:
        return str(self.config.get("model_type") or "?")

    @property
    def architectures(self) -> list[str]:
        return [str(a) for a in self.config.get("architectures") or []]

    @property
    def text_config(self) -> dict:
        """The language model's own settings (multimodal configs nest them under text_config)."""
        return self.config.get("text_config") or self.config

    @property
    def context_length(self) -> int | None:
        value = self.text_config.get("max_position_embeddings") or self.text_config.get("n_positions")
        return int(value) if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def is_causal_lm(self) -> bool:
        return any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in self.architectures)

    def token_ids(self) -> dict:
        """BOS/EOS/PAD as the config (or generation config) declares them."""
        ids = {k: self.config.get(f"{k}_token_id") for k in ("bos", "eos", "pad")}
        generation = os.path.join(self.path, "generation_config.json")
        if os.path.isfile(generation):
            extra = _read_json(generation)
            ids = {k: v if v is not None else extra.get(f"{k}_token_id") for k, v in ids.items()}
        return ids


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is not readable JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InputError(f"{path} is not a JSON object")
    return value


def safetensors_bytes(path: str) -> int:
    """The bytes of tensor data a safetensors file declares, from its header alone; its entries
    must fit inside the file (a header that lies is refused before anything is allocated)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise InputError(f"{path} is not a safetensors file (truncated)")
        (length,) = struct.unpack("<Q", head)
        if length > min(SAFETENSORS_HEADER_MAX, size - 8):
            raise InputError(f"{path} is not a safetensors file (header of {length} bytes)")
        try:
            header = json.loads(f.read(length))
        except ValueError:
            raise InputError(f"{path} is not a safetensors file (unreadable header)") from None
    if not isinstance(header, dict):
        raise InputError(f"{path} is not a safetensors file (its header is not a JSON object)")
    return sum(_tensor_span(path, name, entry, size - 8 - length)
               for name, entry in header.items() if name != "__metadata__")


def _tensor_span(path: str, name: str, entry, data_size: int) -> int:
    """The bytes one header entry claims; its offsets must lie in the file and match its shape."""
    try:
        start, end = (int(v) for v in entry["data_offsets"])
        shape = [int(d) for d in entry["shape"]]
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{path}: tensor {name!r} has no valid data_offsets/shape") from None
    if not 0 <= start <= end <= data_size:
        raise InputError(f"{path}: tensor {name!r} points outside the file (truncated or crafted)")
    width = DTYPE_BYTES.get(str(entry.get("dtype")))
    count = 1
    for d in shape:
        count *= d
    if width is not None and (min(shape, default=0) < 0 or count * width != end - start):
        raise InputError(f"{path}: tensor {name!r} declares shape {shape} but holds {end - start} bytes (crafted)")
    return end - start


def read_hf_dir(path: str, *, trust_pickle: bool = False) -> HfModelDir:
    """Read a model directory's declarations; refuse what cannot be loaded safely (exit 2)."""
    from fwconv.limits import check_declared

    config = _read_json(os.path.join(path, CONFIG))
    _check_config(path, config)
    names = sorted(os.listdir(path))
    weights = [os.path.join(path, n) for n in names if n.endswith(".safetensors")]
    for w in weights:
        if not os.path.isfile(w):
            raise InputError(f"{w} is not a file (a folder or a broken link)")
    pickled = [os.path.join(path, n) for n in names if n.endswith((".bin", ".pt", ".pth", ".ckpt", ".pkl"))]
    if pickled and not trust_pickle:  # loaders may pick them over safetensors: refused whenever present
        raise InputError(f"{path} holds pickled files ({os.path.basename(pickled[0])}): loading them could run code",
                         hint="keep only safetensors (save_pretrained's default), or pass --trust-pickle")
    if not weights and not pickled:
        raise InputError(f"{path} has no weights (no *.safetensors)", hint="save the model with save_pretrained")
    sizes = {w: safetensors_bytes(w) for w in weights}
    for w, declared in sizes.items():
        check_declared(w, declared)
    total = sum(sizes.values()) if weights else sum(os.path.getsize(p) for p in pickled)
    tokenizer = next((os.path.join(path, n) for n in TOKENIZER_FILES if os.path.isfile(os.path.join(path, n))), None)
    return HfModelDir(path, config, weights or pickled, total, tokenizer)


def _check_config(path: str, config: dict) -> None:
    """The fields fwconv reads itself have the types transformers gives them."""
    names = config.get("architectures", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InputError(f"{path}/config.json: 'architectures' must be a list of class names, not {names!r:.60}")
    if not isinstance(config.get("text_config") or {}, dict):
        raise InputError(f"{path}/config.json: 'text_config' must be an object, not {config['text_config']!r:.60}")
    text = config.get("text_config") or config
    for key in ("max_position_embeddings", "n_positions"):
        value = text.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 2):
            raise InputError(f"{path}/config.json: '{key}' must be a whole number of positions >= 2, not {value!r:.40}")


def check_side_files(model_dir: HfModelDir) -> None:
    """The tokenizer's and generation's JSON files, where present, are JSON objects (read up front,
    so a damaged one is named before an export spends its time)."""
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"):
        if os.path.exists(os.path.join(model_dir.path, name)):
            _read_json(os.path.join(model_dir.path, name))
    model_dir.token_ids()


def load_config(model_dir: HfModelDir, *, trust_remote_code: bool = False):
    """transformers' config for the directory (offline): an unknown model type or one that needs
    the directory's own code is bad input, said before any export runs."""
    offline_environment()
    transformers = require("transformers", "llm")
    try:
        with captured_output():
            return transformers.AutoConfig.from_pretrained(model_dir.path, local_files_only=True,
                                                           trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise _load_error(model_dir.path, exc) from None


def _load_error(path: str, exc: Exception) -> InputError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "trust_remote_code" in str(exc):
        return InputError(f"{path} needs its own modelling code to load",
                          hint="pass --trust-remote-code if you trust the directory's code")
    return InputError(f"transformers cannot load {path}: {text}")


def check_memory(model_dir: HfModelDir, factor: float = 3.0) -> None:
    """Refuse before loading a model whose float32 weights (times the export's working copies)
    would not fit in the memory this machine has free."""
    available = _available_bytes()
    need = int(model_dir.weight_bytes * factor)
    if available and need > available:
        raise InputError(f"{model_dir.path}: loading and exporting it needs about {need / 2**30:.1f} GiB of memory; "
                         f"{available / 2**30:.1f} GiB is available", hint="use a machine with more memory")


def _available_bytes() -> int | None:
    """Memory this process may still use: the kernel's MemAvailable, or less under a cgroup limit
    (a container sees the host's meminfo)."""
    found = []
    try:
        with open("/proc/meminfo") as f:
            found += [int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")]
    except OSError:
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        if limit.isdigit():
            found.append(int(limit) - used)
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def offline_environment() -> None:
    """Hugging Face libraries never reach the network from fwconv."""
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_PROGRESS_BARS"):
        os.environ[key] = "1"
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def load_causal_lm(model_dir: HfModelDir, *, trust_remote_code: bool = False, attention: str | None = None):
    """The model in eval mode, float32, from the directory only (the libraries' import chatter
    kept off the terminal); `attention` picks transformers' attention kernels ("sdpa", "eager")."""
    offline_environment()
    transformers = require("transformers", "llm")
    torch = require("torch", "llm")
    try:
        with captured_output():
            model = transformers.AutoModelForCausalLM.from_pretrained(
                model_dir.path, local_files_only=True, trust_remote_code=trust_remote_code,
                use_safetensors=bool(model_dir.weights[0].endswith(".safetensors")), dtype=torch.float32,
                **({"attn_implementation": attention} if attention else {}))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise _load_error(model_dir.path, exc) from None
    return model.eval()


def load_tokenizer(path: str, *, trust_remote_code: bool = False):
    """The directory's tokenizer (fast, from its files only; its own code only when trusted). Any
    failure to read the files is bad input: they are the user's data, not fwconv's."""
    offline_environment()
    transformers = require("transformers", "llm")
    try:
        with captured_output():
            return transformers.AutoTokenizer.from_pretrained(path, local_files_only=True,
                                                               trust_remote_code=trust_remote_code)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: no usable tokenizer ({reason})",
                         hint="save the tokenizer beside the model (tokenizer.save_pretrained)") from None
