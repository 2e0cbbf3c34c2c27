"""Factorized (tensorly-torch) weights: dense reconstruction and re-factorization.

TFNO and factorized UNO store each spectral weight as a ``tltorch.FactorizedTensor``
(a Tucker core and factors, CP weights and factors, TT cores). Interpolating the
factors is *not* interpolating the weights (the map from factors to weights is
multilinear), so every merge happens on the dense reconstruction; this module owns
the two directions of that round trip.
"""

from __future__ import annotations

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
