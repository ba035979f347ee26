"""Attention modules behind one signature, and the factory that builds them by name.

Every module has ``forward(x [B, N, dim], mask=None, reservoir=None) -> (out, reservoir)``
and ``attend(...) -> (out, reservoir_update | None)`` (see docs/CONTRACTS.md).
"""

from __future__ import annotations

import inspect

from torch import nn

from brlgraph.errors import ConfigError
from brlgraph.nn.attention.brl import BRLAttention
from brlgraph.nn.attention.full import FullAttention, full_attention
from brlgraph.nn.attention.linformer import LinformerAttention, linformer_attention
from brlgraph.nn.attention.local import LocalWindowAttention
from brlgraph.nn.attention.performer import PerformerAttention, performer_attention
from brlgraph.nn.attention.regla import ReGLAAttention, regla_attention

_BACKENDS: dict[str, type[nn.Module]] = {
    "brl": BRLAttention,
    "full": FullAttention,
    "local": LocalWindowAttention,
    "performer": PerformerAttention,
    "linformer": LinformerAttention,
    "regla": ReGLAAttention,
}
ATTENTION_BACKENDS: tuple[str, ...] = tuple(_BACKENDS)

__all__ = [
    "ATTENTION_BACKENDS",
    "BRLAttention",
    "FullAttention",
    "LinformerAttention",
    "LocalWindowAttention",
    "PerformerAttention",
    "ReGLAAttention",
    "attention_options",
    "full_attention",
    "linformer_attention",
    "make_attention",
    "performer_attention",
    "regla_attention",
]


def attention_options(name: str) -> tuple[str, ...]:
    """The keyword options backend ``name`` accepts (besides ``dim`` and ``heads``)."""
    if name not in _BACKENDS:
        raise ConfigError(
            f"unknown attention backend {name!r}; choose one of {', '.join(ATTENTION_BACKENDS)}")
    params = inspect.signature(_BACKENDS[name].__init__).parameters
    named = tuple(p for p, v in params.items() if p not in ("self", "dim", "heads")
                  and v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD))
    if _takes_any_option(name):
        # a constructor taking **kwargs (a wrapper around another backend's, say) may
        # accept any option: the model-level window and m must still reach it, not be
        # dropped in favour of the constructor's defaults
        return named + tuple(o for o in ("window", "reservoir_size") if o not in named)
    return named


def _takes_any_option(name: str) -> bool:
    """Whether backend ``name``'s constructor takes ``**kwargs``."""
    return any(v.kind == v.VAR_KEYWORD
               for v in inspect.signature(_BACKENDS[name].__init__).parameters.values())


def make_attention(name: str, dim: int, heads: int = 8, **options) -> nn.Module:
    """Build attention backend ``name`` (one of :data:`ATTENTION_BACKENDS`).

    Raises :class:`~brlgraph.errors.ConfigError` naming the backend or option when the
    name is unknown, an option does not belong to that backend, or a value is invalid.
    """
    allowed = attention_options(name)
    takes_any = _takes_any_option(name)
    for key in options:
        if key not in allowed and not takes_any:  # with **kwargs the constructor checks
            raise ConfigError(
                f"attention {name!r} has no option {key!r}; its options are: "
                f"{', '.join(allowed)}")
    return _BACKENDS[name](dim, heads, **options)
