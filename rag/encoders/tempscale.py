"""TempScale: a temperature on the attention of a trained encoder, with no training.

Zhou et al. (ACL 2025, "Length-Induced Embedding Collapse in PLM-based Models") divide the attention
logits of every self-attention layer by a temperature ``tau``::

    softmax((Q K^T / sqrt(d) + M) / tau)

``tau < 1`` sharpens attention, which counters the collapse of long documents' embeddings towards one
another. For BERT, RoBERTa / XLM-R and MiniLM (a BERT) the logits are ``Q K^T / sqrt(d)`` plus a mask
``M`` that is 0 or the dtype's minimum (no bias added after ``Q K^T``), so dividing by ``tau`` is the
same as dividing the query projection (weight and bias) by ``tau``: :func:`apply_tempscale` folds
``1/tau`` into the weights. The folded model is an ordinary model: eager, SDPA or flash attention,
``torch.onnx.export`` and ``save_pretrained`` all see plain weights (a saved folded model already
carries the temperature; ``config.tempscale_tau`` records it, and a second fold is refused).

Architectures whose logits carry a term the query does not scale (MPNet's and T5's relative position
biases, DeBERTa's disentangled attention) cannot be folded exactly and are refused by name.

:func:`use_explicit_tempscale` is the reference for tests: it leaves the weights alone and computes the
formula above by hand in an attention function of its own (registered with transformers'
``AttentionInterface``).

The paper's code (``src/model.py`` of Yuqi-Zhou/Length_Collapse) swaps each ``attention.self`` module
for an eager copy that divides ``scores + mask`` by the temperature; same numbers, but only eager
attention and only ``model_type`` ``bert`` / ``roberta`` (an XLM-R model is left unscaled there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rag.core.config import check_tempscale
from rag.core.errors import ConfigError

if TYPE_CHECKING:
    import torch

# model_type -> the class of its self-attention module, whose logits are exactly Q K^T * scaling + mask.
FOLDABLE_ATTENTION: dict[str, str] = {
    "bert": "BertSelfAttention",
    "roberta": "RobertaSelfAttention",
    "xlm-roberta": "XLMRobertaSelfAttention",
}
# Why some well-known encoders cannot be folded, for the refusal message.
_NOT_FOLDABLE: dict[str, str] = {
    "mpnet": "MPNet adds a relative position bias to Q K^T",
    "t5": "T5 adds a relative position bias to Q K^T",
    "mt5": "mT5 adds a relative position bias to Q K^T",
    "deberta": "DeBERTa adds content-to-position terms to Q K^T",
    "deberta-v2": "DeBERTa-v2 adds content-to-position terms to Q K^T",
}
_EXPLICIT = "rag_tempscale_explicit"


def check_tau(tau: Any) -> float:
    """``tau`` as a float if it is a finite number > 0, else :class:`ConfigError` naming it."""
    return check_tempscale({"tau": tau}, "tempscale")["tau"]


def _transformers_models(model: torch.nn.Module) -> list[Any]:
    """The outermost transformers models in ``model`` (itself, or e.g. a SentenceTransformer's encoder)."""
    from transformers import PreTrainedModel

    found: list[Any] = []
    for module in model.modules():
        if isinstance(module, PreTrainedModel) and not any(module in outer.modules() for outer in found):
            found.append(module)
    if not found:
        raise ConfigError(
            f"TempScale needs a transformers model, and {type(model).__name__} holds none; pass a "
            "SentenceTransformer or a transformers PreTrainedModel"
        )
    return found


def self_attention_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Every self-attention module of ``model``, after checking that TempScale folds exactly into it.

    Refuses (:class:`ConfigError`) a model type outside :data:`FOLDABLE_ATTENTION`, naming it and why.
    """
    import torch

    layers: list[torch.nn.Module] = []
    for hf_model in _transformers_models(model):
        config = hf_model.config
        model_type = getattr(config, "model_type", "") or type(hf_model).__name__
        wanted = FOLDABLE_ATTENTION.get(model_type)
        if wanted is None:
            why = _NOT_FOLDABLE.get(model_type, "its logits are not known to be Q K^T / sqrt(d) + mask")
            raise ConfigError(
                f"TempScale cannot be applied exactly to model type {model_type!r} ({why}); it supports "
                f"{', '.join(sorted(FOLDABLE_ATTENTION))}. Remove encoder.tempscale or use such a model"
            )
        found = [m for m in hf_model.modules() if type(m).__name__ == wanted]
        if not all(isinstance(getattr(m, "query", None), torch.nn.Linear) for m in found):
            raise ConfigError(f"TempScale needs a linear query projection in each {wanted}, not found here")
        expected = int(getattr(config, "num_hidden_layers", len(found)))
        if len(found) != expected:
            raise ConfigError(
                f"TempScale found {len(found)} {wanted} modules in a {model_type!r} model with "
                f"{expected} layers; this model's layout is not supported"
            )
        layers.extend(found)
    return layers


def apply_tempscale(model: torch.nn.Module, tau: float) -> torch.nn.Module:
    """Fold ``1/tau`` into the query projection of every self-attention layer of ``model``, in place.

    ``model`` is a SentenceTransformer or a transformers model (BERT, RoBERTa, XLM-R, MiniLM). ``tau ==
    1`` changes nothing (not one weight is touched). Returns ``model``. A model folded before (its
    config records ``tempscale_tau``) is refused, since folding twice would multiply the temperatures.
    """
    import torch

    tau = check_tau(tau)
    layers = self_attention_layers(model)
    hf_models = _transformers_models(model)
    for hf_model in hf_models:
        done = getattr(hf_model.config, "tempscale_tau", None)
        if done is not None:
            raise ConfigError(
                f"this model already has TempScale tau={done} folded into its weights; load the original "
                "model to apply another tau"
            )
    if tau == 1.0:
        return model
    with torch.no_grad():
        for layer in layers:
            query = layer.get_submodule("query")
            if isinstance(query, torch.nn.Linear):  # always: self_attention_layers checked it
                query.weight.div_(tau)
                if query.bias is not None:
                    query.bias.div_(tau)
    for hf_model in hf_models:
        hf_model.config.tempscale_tau = tau
    return model


def _explicit_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **_: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax((Q K^T * scaling + M) / tau) V, written out; tau is the module's ``explicit_tempscale_tau``."""
    import torch

    tau = float(getattr(module, "explicit_tempscale_tau", 1.0))
    scale = query.size(-1) ** -0.5 if scaling is None else scaling
    logits = torch.matmul(query, key.transpose(2, 3)) * scale
    if attention_mask is not None:
        logits = logits + attention_mask  # 0 where attended, the dtype's minimum where masked
    weights = torch.softmax(logits / tau, dim=-1)
    weights = torch.nn.functional.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


def register_explicit_attention() -> str:
    """Register the explicit attention (and eager's additive mask for it) with transformers; its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(_EXPLICIT, _explicit_attention)
    AttentionMaskInterface.register(_EXPLICIT, eager_mask)
    return _EXPLICIT


def use_explicit_tempscale(model: torch.nn.Module, tau: float) -> torch.nn.Module:
    """Reference TempScale: compute ``softmax((QK^T/sqrt(d) + M) / tau)`` by hand, weights untouched.

    Switches every transformers model in ``model`` to the explicit attention function, in place, and
    returns ``model``. Slower than :func:`apply_tempscale` (eager only); meant for tests and checks.
    """
    tau = check_tau(tau)
    name = register_explicit_attention()
    for layer in self_attention_layers(model):
        layer.explicit_tempscale_tau = tau  # type: ignore[assignment]
    for hf_model in _transformers_models(model):
        hf_model.set_attn_implementation(name)
    return model
