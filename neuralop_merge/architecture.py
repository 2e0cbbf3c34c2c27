"""Architecture records: a model's class and init arguments as plain JSON.

neuraloperator's ``BaseModel`` remembers its init arguments and ``save_checkpoint``
pickles them into ``<name>_metadata.pkl``. Other models (UNO, CODANO, plain
``nn.Module``s) remember nothing, and a model whose arguments are sub-models (UQNO's
``base_model``) pickles whole modules, which a safe loader must refuse. So
:func:`neuralop_merge.save_model` also writes an *architecture record* into the
provenance JSON, and :func:`neuralop_merge.load_model` rebuilds a model from it
without importing anything a file names: classes are looked up among neuraloperator's
models and the allow-list of :mod:`neuralop_merge.allowlist`, or given by the caller.

A record is ``{"class": "neuralop.models.uno.UNO", "args": [...], "kwargs": {...}}``.
Tuples, dicts, non-finite floats, allow-listed functions and sub-models are tagged
(``{"tuple": [...]}``, ``{"dict": {...}}``, ``{"float": "inf"}``, ``{"callable": name}``,
``{"model": record}``) so that they come back exactly.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

import neuralop.models
import torch
from neuralop.models import UQNO
from neuralop.models.base_model import BaseModel
from torch import nn

from .allowlist import ACTIVATION_MODULES, named_callables, qualified_name
from .errors import CheckpointError
from .weights import METADATA_KEY

# Keys of neuraloperator's ``_init_kwargs`` that are not arguments of the class.
BOOKKEEPING_KWARGS = frozenset({"_version", "_name", "args"})
_PLAIN = (type(None), bool, int, float, str)


def init_arguments(init_kwargs: Mapping[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The positional and keyword arguments a neuraloperator ``_init_kwargs`` record stands for.

    neuraloperator keeps the positional arguments under ``"args"`` and adds the
    bookkeeping keys of :data:`BOOKKEEPING_KWARGS`, which the class does not take.
    """
    kwargs = {key: value for key, value in init_kwargs.items() if key not in BOOKKEEPING_KWARGS}
    return tuple(init_kwargs.get("args", ())), kwargs


class UnrecordableError(ValueError):
    """An init argument that has no JSON form (an arbitrary object or function)."""


def architecture_record(model: nn.Module, init_kwargs: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The JSON record that rebuilds ``model``'s architecture, or None when there is none.

    A neuraloperator ``BaseModel`` is described by the init arguments it recorded.
    Any other model is described by ``init_kwargs`` when given (CODANO keeps too few
    of its arguments to read them back), else by the arguments of its ``__init__``
    read back from same-named attributes (the default where there is none). Either is
    kept only if the model it builds has the same modules and tensor shapes as ``model``.
    """
    try:
        return _record(model, init_kwargs)
    except UnrecordableError:
        return None


def _record(model: nn.Module, given_kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    init_kwargs = getattr(model, "_init_kwargs", None)
    if given_kwargs is not None:
        if not _rebuilds(model, given_kwargs):
            raise UnrecordableError(f"init_kwargs do not rebuild this {type(model).__name__}")
        args, kwargs = (), dict(given_kwargs)
    elif isinstance(init_kwargs, Mapping) and "_name" in init_kwargs:
        args, kwargs = init_arguments(init_kwargs)
    else:
        args, kwargs = (), _introspected_kwargs(model)
    return {
        "class": qualified_name(type(model)),
        "args": [_encode(value) for value in args],
        "kwargs": {str(key): _encode(value) for key, value in kwargs.items()},
    }


def _introspected_kwargs(model: nn.Module) -> dict[str, Any]:
    """``model``'s init arguments read back from its attributes, checked by rebuilding it."""
    kwargs: dict[str, Any] = {}
    for parameter in list(inspect.signature(type(model).__init__).parameters.values())[1:]:
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise UnrecordableError(f"{type(model).__name__}.__init__ takes *args or **kwargs")
        value = _unwrapped(getattr(model, parameter.name, inspect.Parameter.empty), parameter.default)
        if value is inspect.Parameter.empty or not _is_argument_like(value):
            value = parameter.default  # the attribute is missing, or a module built from the argument
        if value is inspect.Parameter.empty:
            raise UnrecordableError(f"{type(model).__name__} does not keep its argument {parameter.name!r}")
        kwargs[parameter.name] = value
    if not _rebuilds(model, kwargs):
        raise UnrecordableError(f"{type(model).__name__} does not keep all its init arguments")
    return kwargs


def _unwrapped(value: Any, default: Any) -> Any:
    """``value``, or its only element where a string argument is kept in a 1-tuple (UNO's skips)."""
    if isinstance(value, tuple) and len(value) == 1 and isinstance(default, str):
        return value[0]
    return value


def _is_argument_like(value: Any) -> bool:
    """Whether an attribute can be what was passed to ``__init__`` (not a tensor or built layer)."""
    if isinstance(value, (list, tuple)):
        return all(_is_argument_like(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _is_argument_like(v) for k, v in value.items())
    return isinstance(value, _PLAIN) or _callable_name(value) in named_callables()


def _callable_name(value: Any) -> str | None:
    """The qualified name of a function or class, None for anything else."""
    return qualified_name(value) if callable(value) and hasattr(value, "__qualname__") else None


def _rebuilds(model: nn.Module, kwargs: Mapping[str, Any]) -> bool:
    """Whether ``type(model)(**kwargs)`` has ``model``'s modules and tensor shapes."""
    try:
        with torch.device("meta"):
            rebuilt = type(model)(**kwargs)
    except Exception:  # noqa: BLE001 - any failure means the guessed arguments are wrong
        return False
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items() if torch.is_tensor(v)}
    rebuilt_shapes = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items() if torch.is_tensor(v)}
    return repr(rebuilt) == repr(model) and shapes == rebuilt_shapes


def _encode(value: Any) -> Any:
    """``value`` as JSON, tagged where JSON alone would lose its type (see the module docstring)."""
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": str(value)}
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, tuple):
        return {"tuple": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {"dict": {k: _encode(v) for k, v in value.items()}}
    if isinstance(value, nn.Module):
        return {"model": _record(value)}
    name = _callable_name(value)
    if name in named_callables():
        return {"callable": name}
    raise UnrecordableError(f"init argument {value!r} has no JSON form")


def holds_submodels(record: Any) -> bool:
    """Whether an architecture record passes a model as an init argument (UQNO's ``base_model``)."""
    if not isinstance(record, Mapping):
        return False
    args, kwargs = record.get("args"), record.get("kwargs")
    values = [*(args if isinstance(args, list) else []), *(kwargs.values() if isinstance(kwargs, Mapping) else [])]
    return any(isinstance(value, Mapping) and "model" in value for value in values)


def uqno_arguments(state: Mapping[str, Any]) -> tuple[type[nn.Module], tuple[Any, ...], dict[str, Any]] | None:
    """UQNO's class and arguments as its own ``save_checkpoint`` state file records them, else None.

    ``UQNO.save_checkpoint`` pickles its sub-models into the metadata file, which no
    safe loader reads. Its state file carries the init arguments of the base model,
    though: neuraloperator writes the first sub-model's ``_metadata`` into the shared
    state dict. UQNO's default residual model is a copy of the base model, which is
    what is rebuilt; a strict load then refuses any other residual architecture.
    """
    base_kwargs = state.get(METADATA_KEY)
    prefixes = {key.split(".", 1)[0] for key in state if key != METADATA_KEY}
    if prefixes != {"base_model", "residual_model"} or not isinstance(base_kwargs, Mapping):
        return None
    base_class = BaseModel._models.get(str(base_kwargs.get("_name")).lower())
    if base_class is None:
        return None
    args, kwargs = init_arguments(base_kwargs)
    return UQNO, (), {"base_model": base_class(*args, **kwargs)}


def trusted_classes() -> dict[str, type[nn.Module]]:
    """The model classes a record may name: neuraloperator's models and activation modules."""
    classes = [c for c in vars(neuralop.models).values() if isinstance(c, type) and issubclass(c, nn.Module)]
    classes += [*BaseModel._models.values(), *ACTIVATION_MODULES]
    return {qualified_name(c): c for c in classes}


def rebuild_arguments(
    record: Mapping[str, Any], source: str, model_class: type[nn.Module] | None = None
) -> tuple[type[nn.Module], tuple[Any, ...], dict[str, Any]]:
    """Class, positional and keyword arguments that ``record`` describes.

    Parameters
    ----------
    record : Mapping
        an architecture record, as :func:`architecture_record` writes it
    source : str
        the file the record came from, for messages
    model_class : type, optional
        the class to build, for a record that names a class outside neuraloperator
        (a plain ``nn.Module`` of the caller's); nothing a file names is imported

    Raises
    ------
    CheckpointError
        when the record is malformed, or names a class or function that is not allowed
    """
    try:
        name, args, kwargs = record["class"], record["args"], record["kwargs"]
        if not (isinstance(name, str) and isinstance(args, list) and isinstance(kwargs, dict)):
            raise TypeError("class, args and kwargs must be a string, a list and an object")
    except (KeyError, TypeError) as error:
        raise CheckpointError(f"{source}: malformed architecture record ({error})") from None
    resolved = model_class or trusted_classes().get(name)
    if resolved is None:
        raise CheckpointError(
            f"{source} records class {name}, which is not a neuraloperator model; "
            "pass model_class= or template= (CLI: --model-class MODULE:CLASS)"
        )
    return resolved, tuple(_decode(v, source) for v in args), {k: _decode(v, source) for k, v in kwargs.items()}


def _decode(value: Any, source: str) -> Any:
    """The inverse of :func:`_encode`; only allow-listed functions and neuraloperator models come back."""
    if isinstance(value, list):
        return [_decode(v, source) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        raise CheckpointError(f"{source}: malformed architecture record value {value!r}")
    ((tag, content),) = value.items()
    if tag == "tuple" and isinstance(content, list):
        return tuple(_decode(v, source) for v in content)
    if tag == "dict" and isinstance(content, dict):
        return {k: _decode(v, source) for k, v in content.items()}
    if tag == "float" and content in ("inf", "-inf", "nan"):
        return float(content)
    if tag == "callable" and content in named_callables():
        return named_callables()[content]
    if tag == "model" and isinstance(content, dict):
        model_class, args, kwargs = rebuild_arguments(content, source)
        return model_class(*args, **kwargs)
    raise CheckpointError(f"{source}: architecture record value {value!r} is not allowed")
