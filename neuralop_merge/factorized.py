"""Factorized (tensorly-torch) weights: dense reconstruction and re-factorization.

TFNO and factorized UNO store each spectral weight as a ``tltorch.FactorizedTensor``
(a Tucker core and factors, CP weights and factors, TT cores). Interpolating the
factors is *not* interpolating the weights (the map from factors to weights is
multilinear), so every merge happens on the dense reconstruction; this module owns
the two directions of that round trip.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable

import tensorly as tl
import torch
from tensorly.decomposition import parafac, tensor_train, tucker
from tltorch import FactorizedTensor

tl.set_backend("pytorch")


def factorized_modules(model: torch.nn.Module) -> dict[str, FactorizedTensor]:
    """Map the module path of every factorized weight of ``model`` to its module."""
    return {path: module for path, module in model.named_modules() if isinstance(module, FactorizedTensor)}


def is_dense(tensor_module: FactorizedTensor) -> bool:
    """True for tltorch's ``DenseTensor``: one plain parameter, nothing to reconstruct."""
    return tensor_module.name.lower().endswith("dense")


def reconstruct(tensor_module: FactorizedTensor) -> torch.Tensor:
    """The dense weight represented by ``tensor_module``, detached from autograd."""
    return tensor_module.to_tensor().detach()


def dense_state(tensor_module: FactorizedTensor, dense: torch.Tensor) -> dict[str, torch.Tensor]:
    """The state entries that make the dense ``tensor_module`` hold ``dense``.

    tltorch's ``ComplexDenseTensor`` (SFNO's default weight) stores a complex weight
    as its real view, with a trailing axis of 2; ``DenseTensor`` stores it as is.
    """
    (stored,) = tensor_module.state_dict(keep_vars=True).values()
    if dense.is_complex() and not stored.is_complex():
        dense = torch.view_as_real(dense)
    return {"tensor": dense}


def densify(model: torch.nn.Module) -> list[str]:
    """Replace every non-dense factorized weight of ``model`` by a dense one, in place.

    The new weight is the one its layer builds with ``factorization=None`` (same shape,
    dtype and device, uninitialised), and a spectral layer's contraction is re-chosen
    for it, so the layer computes exactly with the dense weight it is given. Layer
    attributes and the neuraloperator init arguments of every model in the tree are
    updated to match, so that a saved copy rebuilds as this dense architecture.

    Returns
    -------
    list[str]
        the module paths of the replaced weights
    """
    replaced = []
    for path, tensor_module in factorized_modules(model).items():
        if is_dense(tensor_module):
            continue
        owner_path, _, attribute = path.rpartition(".")
        owner = model.get_submodule(owner_path)
        dense = _dense_like(tensor_module)
        setattr(owner, attribute, dense)
        if hasattr(owner, "_contract"):
            owner._contract = _contract_chooser(owner)(
                dense, implementation=getattr(owner, "implementation", "reconstructed"),
                separable=getattr(owner, "separable", False),
            )
        replaced.append(path)
    if replaced:
        _drop_factorization_arguments(model)
    return replaced


def _dense_like(tensor_module: FactorizedTensor) -> FactorizedTensor:
    """An uninitialised dense weight of the same shape, family (real or complex storage) and device."""
    reference = next(tensor_module.parameters())
    shape = tuple(tensor_module.shape)
    if tensor_module.name.lower().startswith("complex"):  # SphericalConv's real-view weights
        return FactorizedTensor.new(shape, rank=None, factorization="ComplexDense", device=reference.device)
    dtype = reference.dtype if reference.is_complex() else torch.cfloat
    return FactorizedTensor.new(shape, rank=None, factorization="Dense", dtype=dtype, device=reference.device)


def _contract_chooser(owner: torch.nn.Module) -> Callable[..., Callable[..., torch.Tensor]]:
    """The ``get_contract_fun`` of the module that defines ``owner``'s class (spectral and
    spherical convolutions each have their own)."""
    chooser = getattr(sys.modules[type(owner).__module__], "get_contract_fun", None)
    if chooser is None:
        raise ValueError(f"{type(owner).__name__} picks its contraction without get_contract_fun; cannot densify it")
    return chooser


def _drop_factorization_arguments(model: torch.nn.Module) -> None:
    """Set the factorization attributes and init arguments of every module in the tree to None.

    TFNO passes its default ``factorization="Tucker"`` through ``**kwargs``, so its
    recorded arguments lack the key: it is added, which TFNO honours.
    """
    for module in model.modules():
        if isinstance(getattr(module, "factorization", None), str):
            module.factorization = None
        init_kwargs = getattr(module, "_init_kwargs", None)
        if not isinstance(init_kwargs, dict):
            continue
        keys = [k for k in init_kwargs if k == "factorization" or k.endswith("_factorization")]
        if not keys and _accepts_any_keyword(type(module)):
            keys = ["factorization"]
        module._init_kwargs = {**init_kwargs, **dict.fromkeys(keys)}


def _accepts_any_keyword(model_class: type) -> bool:
    parameters = inspect.signature(model_class.__init__).parameters.values()
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


Refit = Callable[[torch.Tensor, FactorizedTensor], tuple[dict[str, torch.Tensor], torch.Tensor]]


def _factor_keys(factors: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"factors.factor_{i}": f for i, f in enumerate(factors)}


def _refit_tucker(dense: torch.Tensor, source: FactorizedTensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    core, factors = tucker(dense, rank=list(source.core.shape), init="svd", n_iter_max=100, tol=1e-8)
    return {"core": core, **_factor_keys(factors)}, tl.tucker_to_tensor((core, factors))


def _refit_cp(dense: torch.Tensor, source: FactorizedTensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    # Starting ALS from the source's own factors converges far better than a random
    # start, since a merged weight stays close to the experts it came from.
    init = tl.cp_tensor.CPTensor((source.weights.detach().clone(), [f.detach().clone() for f in source.factors]))
    weights, factors = parafac(dense, source.rank, init=init, n_iter_max=200, tol=1e-10)
    return {"weights": weights, **_factor_keys(factors)}, tl.cp_to_tensor((weights, factors))


def _refit_tt(dense: torch.Tensor, source: FactorizedTensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    factors = tensor_train(dense, rank=list(source.rank))
    return _factor_keys(list(factors)), tl.tt_to_tensor(factors)


_REFITTERS: dict[str, Refit] = {"tucker": _refit_tucker, "cp": _refit_cp, "tt": _refit_tt}


def refactorize(dense: torch.Tensor, source: FactorizedTensor) -> tuple[dict[str, torch.Tensor], float]:
    """Re-factorize ``dense`` in the format and at the rank of ``source``.

    Parameters
    ----------
    dense : torch.Tensor
        the merged dense weight
    source : FactorizedTensor
        a factorized weight of the same shape whose format and rank are kept

    Returns
    -------
    (parameters, relative_error)
        the new factor tensors keyed as in ``source.state_dict()``, and
        ``||dense - reconstruction|| / ||dense||``
    """
    refit = _REFITTERS.get(source.name.lower())
    if refit is None:
        raise ValueError(f"cannot re-factorize a {source.name} weight; supported: {sorted(_REFITTERS)}")
    with torch.no_grad():
        parameters, rebuilt = refit(dense, source)
        error = torch.linalg.vector_norm(dense - rebuilt) / torch.linalg.vector_norm(dense).clamp_min(1e-30)
    dtype = next(source.parameters()).dtype
    return {k: v.to(dtype) for k, v in parameters.items()}, float(error)
