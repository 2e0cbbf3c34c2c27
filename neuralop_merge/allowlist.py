"""The non-tensor objects a genuine checkpoint may hold, beyond plain containers.

neuraloperator stores a model's init arguments with ``torch.save``: activation
functions (``non_linearity``) and layer classes (``conv_module``). torch pickles them
in three ways, each of which :func:`neuralop_merge.io.safe_load` must accept:

* Python functions and classes by name (``torch.nn.functional.mish``, ``SpectralConv``);
* ATen functions such as ``torch.tanh`` as ``getattr(torch._C._VariableFunctionsClass,
  "tanh")``: the unpickler resolves such a call only to a listed activation, so a file
  reaches nothing else of that class (:mod:`neuralop_merge.safety`);
* activation modules such as ``nn.GELU()`` as the class plus its attribute dict.

The same table names callables in JSON architecture records (:mod:`.architecture`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from neuralop.layers.fno_block import FNOBlocks
from neuralop.layers.spectral_convolution import SpectralConv
from torch import nn

ACTIVATION_FUNCTIONS: tuple[Callable[..., Any], ...] = (
    F.gelu, F.relu, F.silu, F.tanh, F.sigmoid, F.leaky_relu, F.elu, F.softplus, F.mish, F.selu, F.celu,
    F.hardswish, F.hardtanh, F.logsigmoid, F.softsign, F.tanhshrink,
    torch.tanh, torch.sigmoid, torch.relu, torch.selu, torch.celu,
)

ACTIVATION_MODULES: tuple[type[nn.Module], ...] = (
    nn.GELU, nn.ReLU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.Softplus, nn.Mish, nn.SELU,
    nn.CELU, nn.Hardswish, nn.Hardtanh, nn.Identity,
)


def _optional_layer_classes() -> tuple[type[nn.Module], ...]:
    """Layer classes of neuraloperator models that exist only with torch_harmonics installed."""
    try:
        from neuralop.layers.spherical_convolution import SphericalConv
    except ImportError:
        return ()
    return (SphericalConv,)


LAYER_CLASSES: tuple[type[nn.Module], ...] = (SpectralConv, FNOBlocks, *_optional_layer_classes())


# Allow-listed beyond the basic table. ``getattr`` and torch's function table are only ever
# references: :mod:`neuralop_merge.safety` resolves ``getattr(table, name)`` to an attribute
# only when that attribute is itself listed here (``torch.tanh``, not any ATen function).
EXTRA_SAFE_GLOBALS: tuple[Any, ...] = (
    getattr,
    torch._C._VariableFunctionsClass,
    *ACTIVATION_FUNCTIONS,
    *ACTIVATION_MODULES,
    *LAYER_CLASSES,
)


def qualified_name(value: Callable[..., Any] | type) -> str:
    """``module.qualname`` of a function or class, as JSON records spell it."""
    return f"{getattr(value, '__module__', None) or 'torch'}.{value.__qualname__}"


@functools.lru_cache(maxsize=1)
def named_callables() -> Mapping[str, Callable[..., Any] | type]:
    """Every allow-listed function and class under its qualified name (read-only)."""
    return MappingProxyType({qualified_name(value): value for value in (*ACTIVATION_FUNCTIONS, *ACTIVATION_MODULES, *LAYER_CLASSES)})
