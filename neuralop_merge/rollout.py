"""Autoregressive rollout of a one-step neural operator.

A one-step model maps the most recent frame(s) of a trajectory to the next
frame. :func:`rollout` feeds each prediction back as input and returns the
whole trajectory, with the bookkeeping done once per call rather than once per
step: the output is preallocated, data moves to the model's device once, and
gradients are never tracked.

Frame layout
------------
Frames are ``[C, *spatial]`` tensors and trajectories ``[B, T, C, *spatial]``.
With ``history=h`` the model sees the ``h`` most recent frames concatenated on
the channel axis, oldest first, i.e. a ``[B, h*C, *spatial]`` input, and must
return the next frame ``[B, C, *spatial]``. The returned trajectory starts with
the ``h`` given frames followed by the ``n_steps`` predicted ones, so frame
``h - 1 + s`` is the prediction after ``s`` steps for every ``h``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from .errors import EvaluationError
from .warning_site import warn

AMP_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}
# torch.compile modes that capture CUDA graphs on a CUDA device.
CUDA_GRAPH_MODES = frozenset({"reduce-overhead", "max-autotune"})
# Largest relative L2 gap between a compiled step and the eager model that passes as the same function:
# compiled float32 kernels agree to ~1e-6 (TF32 to ~1e-3); under autocast both sides round to 8 or 11 bits.
COMPILE_CHECK_TOLERANCE = {None: 1e-3, "bf16": 2e-2, "fp16": 1e-2}

Step = Callable[[Tensor], Tensor]


def rollout(
    model: nn.Module,
    x0: Tensor,
    n_steps: int,
    *,
    device: torch.device | str | None = None,
    amp: str | None = None,
    compile: bool | str = False,
    max_batch: int | None = None,
    history: int = 1,
    data_processor: nn.Module | None = None,
) -> Tensor:
    """Roll a one-step model out autoregressively for ``n_steps`` steps.

    Parameters
    ----------
    model : nn.Module
        One-step model (any neuraloperator model or plain module) whose output
        has the shape of one frame. It runs in eval mode during the rollout
        and gets its previous mode back afterwards.
    x0 : Tensor
        Initial frame ``[B, C, *spatial]`` when ``history == 1``, else the
        ``history`` most recent frames ``[B, history, C, *spatial]``, oldest
        first.
    n_steps : int
        Number of predicted frames, >= 0.
    device : torch.device or str, optional
        Device to compute on. The model is moved there in place (as
        neuraloperator's ``Trainer`` does). By default the model's own device
        (``x0``'s device for a module without parameters or buffers).
    amp : {None, "bf16", "fp16"}, optional
        Run the model under ``torch.autocast`` with this dtype. The trajectory
        keeps ``x0``'s dtype. Refused with :class:`EvaluationError` where the
        FFT cannot run in that precision, see :func:`check_amp_supported`.
    compile : bool or str, default False
        Wrap the model in ``torch.compile``; a string is used as the compile
        ``mode`` (``"reduce-overhead"`` enables CUDA graphs on CUDA). On CPU it
        slows neuraloperator's FNO down (inductor leaves the FFTs and complex
        contractions to eager kernels; ``benchmarks/rollout_compile.py``). The
        first step of each input shape is checked against the eager model; where
        they differ (inductor miscompiles the FNO at some shapes) a
        ``RuntimeWarning`` says so and the rollout runs eagerly.
    max_batch : int, optional
        Roll out at most this many samples at a time, which bounds the memory
        of intermediate activations on the compute device.
    history : int, default 1
        Number of past frames the model sees, concatenated on channels.
    data_processor : neuraloperator DataProcessor, optional
        The pipeline's ``DefaultDataProcessor`` (or any with ``preprocess`` and
        ``postprocess``): each step's input is preprocessed (normalized) and its
        output postprocessed (de-normalized), as ``Trainer`` does in evaluation, so
        the trajectory stays in physical units. It runs in eval mode during the
        rollout and gets its previous mode back afterwards.


    Returns
    -------
    Tensor
        Trajectory ``[B, history + n_steps, C, *spatial]`` on ``x0``'s device
        and with ``x0``'s dtype; its first ``history`` frames are the given
        ones. With ``history == 1`` this is ``[B, n_steps + 1, C, *spatial]``
        and frame 0 is ``x0``.

    Raises
    ------
    EvaluationError
        when ``x0``'s dtype is not the model's (cast it with ``x0.to(dtype)``), or
        for bad shapes and counts
    """
    frames = _as_frames(x0, history)
    _check_counts(n_steps, max_batch)
    compute_device = resolve_device(model, x0, device)
    if device is not None:  # otherwise the model is already where it computes
        model.to(compute_device)
    forget_grids_elsewhere(model, compute_device)
    if amp is not None:
        check_amp_supported(amp, compute_device, frames.shape[3:])
    trajectory = torch.empty(
        (frames.shape[0], history + n_steps, *frames.shape[2:]),
        dtype=x0.dtype,
        device=x0.device,
    )
    _check_dtype(model, x0)
    step = _processed(_make_step(model, amp, compile, compute_device), data_processor)
    # Toggling the mode walks every sub-module: skip it for a module already in eval.
    in_training = [module for module in (model, data_processor) if module is not None and module.training]
    for module in in_training:
        module.eval()
    try:
        with torch.inference_mode():
            frames_on_device = to_device(frames, compute_device)
            for rows in _batch_slices(frames.shape[0], max_batch):
                _rollout_rows(step, frames_on_device[rows], trajectory[rows], history)
    finally:
        for module in in_training:
            module.train()
    return trajectory


def _check_dtype(model: nn.Module, x0: Tensor) -> None:
    """Refuse frames whose dtype differs from the model's floating-point weights."""
    weight = next((p for p in model.parameters() if p.is_floating_point()), None)
    if weight is not None and x0.is_floating_point() and x0.dtype != weight.dtype:
        raise EvaluationError(
            f"x0 is {x0.dtype} but the model's weights are {weight.dtype}; cast the frames with x0.to({weight.dtype})"
        )


def _processed(step: Step, data_processor: nn.Module | None) -> Step:
    """``step`` between the data processor's preprocess and postprocess, if there is one."""
    if data_processor is None:
        return step

    def processed_step(inputs: Tensor) -> Tensor:
        sample = data_processor.preprocess({"x": inputs, "y": inputs})
        output, _ = data_processor.postprocess(step(sample["x"]), sample)
        return output

    return processed_step


def resolve_device(
    model: nn.Module, x0: Tensor, device: torch.device | str | None
) -> torch.device:
    """Device a rollout computes on.

    Parameters
    ----------
    model : nn.Module
        The model to roll out.
    x0 : Tensor
        The initial frames.
    device : torch.device or str or None
        Explicit choice; ``None`` means the model's device.

    Returns
    -------
    torch.device
        ``device`` if given, else the device of the model's first parameter
        or buffer, else ``x0``'s device.
    """
    if device is not None:
        return torch.device(device)
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return x0.device if first is None else first.device


def check_amp_supported(amp: str, device: torch.device, spatial_shape: torch.Size) -> None:
    """Refuse a mixed precision the FFTs cannot run in.

    On CPU, autocast runs every ``torch.fft`` op in float32 whatever its input
    dtype, so bf16 and fp16 work at any size. On CUDA, FFT-based layers then
    see half-precision inputs, and cuFFT computes those only for power-of-two
    sizes.

    Parameters
    ----------
    amp : str
        Requested precision, a key of :data:`AMP_DTYPES`.
    device : torch.device
        Compute device.
    spatial_shape : torch.Size
        Spatial size of one frame.

    Raises
    ------
    EvaluationError
        For an unknown ``amp`` or, on CUDA, a spatial size that is not a power
        of two.
    """
    if amp not in AMP_DTYPES:
        raise EvaluationError(f"amp must be one of {sorted(AMP_DTYPES)} or None, got {amp!r}")
    if device.type != "cuda":
        return
    if not all(_is_power_of_two(size) for size in spatial_shape):
        size = "x".join(str(s) for s in spatial_shape)
        raise EvaluationError(
            f"amp={amp!r} on CUDA needs power-of-two spatial sizes "
            f"(cuFFT half precision), got {size}; use amp=None"
        )


def forget_grids_elsewhere(model: nn.Module, device: torch.device) -> None:
    """Drop positional-grid caches that live on another device than ``device``.

    neuraloperator's grid embeddings cache their last grid in a plain attribute, which
    ``model.to(...)`` does not move; a model that ran on CUDA and then on the CPU would
    concatenate its CPU input with the cached CUDA grid. Dropping the cache makes the
    embedding rebuild it where the model now computes.

    Parameters
    ----------
    model : nn.Module
        Model whose sub-modules may hold a cached ``_grid`` (tensor or sequence of tensors).
    device : torch.device
        Where the model computes.
    """
    for module in model.modules():
        grid = getattr(module, "_grid", None)
        tensors = [grid] if isinstance(grid, Tensor) else list(grid) if isinstance(grid, (list, tuple)) else []
        if any(isinstance(t, Tensor) and t.device != device for t in tensors):
            module._grid = None


def to_device(tensor: Tensor, device: torch.device) -> Tensor:
    """Copy ``tensor`` to ``device``, asynchronously from pinned memory on CUDA.

    Parameters
    ----------
    tensor : Tensor
        Tensor to move.
    device : torch.device
        Destination.

    Returns
    -------
    Tensor
        ``tensor`` itself if it already lives on ``device``.
    """
    if tensor.device == device:
        return tensor
    if device.type == "cuda" and tensor.device.type == "cpu":
        # A pinned source lets the host-to-device copy overlap with the host.
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def _as_frames(x0: Tensor, history: int) -> Tensor:
    """View ``x0`` as ``[B, history, C, *spatial]`` after checking its shape."""
    if not isinstance(history, int) or history < 1:
        raise EvaluationError(f"history must be an integer >= 1, got {history!r}")
    if history == 1:
        if x0.dim() < 3:
            raise EvaluationError(
                f"x0 must be [B, C, *spatial] with at least one spatial axis, got shape {tuple(x0.shape)}"
            )
        return x0.unsqueeze(1)
    if x0.dim() < 4 or x0.shape[1] != history:
        raise EvaluationError(
            f"with history={history}, x0 must be [B, {history}, C, *spatial], got shape {tuple(x0.shape)}"
        )
    return x0


def _check_counts(n_steps: int, max_batch: int | None) -> None:
    if not isinstance(n_steps, int) or n_steps < 0:
        raise EvaluationError(f"n_steps must be an integer >= 0, got {n_steps!r}")
    if max_batch is not None and (not isinstance(max_batch, int) or max_batch < 1):
        raise EvaluationError(f"max_batch must be an integer >= 1 or None, got {max_batch!r}")


def _make_step(
    model: nn.Module, amp: str | None, compile: bool | str, device: torch.device
) -> Step:
    """The one-step function: the (compiled) model under the requested autocast."""
    forward: Step = model
    if compile:
        mode = compile if isinstance(compile, str) else None
        forward = torch.compile(model, mode=mode)
        if device.type == "cuda" and mode in CUDA_GRAPH_MODES:
            forward = _graph_safe(forward)
        forward = _CheckedCompile(model, forward, COMPILE_CHECK_TOLERANCE[amp])
    if amp is None:
        return forward
    dtype = AMP_DTYPES[amp]

    def autocast_forward(inputs: Tensor) -> Tensor:
        with torch.autocast(device_type=device.type, dtype=dtype):
            return forward(inputs)

    return autocast_forward


def _graph_safe(forward: Step) -> Step:
    """``forward`` made safe to feed its own output back under CUDA graphs.

    A CUDA-graph replay reuses its output memory, so the previous step's output,
    which is this step's input, would be overwritten while it is read. Each step
    is marked as a new iteration and its output copied out of the graph's pool.
    """
    def step(inputs: Tensor) -> Tensor:
        torch.compiler.cudagraph_mark_step_begin()
        return forward(inputs).clone()

    return step


class _CheckedCompile:
    """A compiled step checked against the eager model on the first input of each shape.

    Inductor miscompiles neuraloperator's spectral convolution at some shapes, on the CPU
    (torch 2.13) and on CUDA (torch 2.11) alike: ``benchmarks/compile_gaps.py`` finds relative
    L2 errors of 1.9e-2 to 3.3e-2 for 6 modes at 16x16, 8 at 24x24, 12 at 32x32 and 16 at
    48x48, and none at the other sizes from 16 to 64, so a compiled rollout could be silently
    wrong. Where the two disagree beyond ``tolerance`` (relative L2), this warns once and runs
    eagerly from then on. The check costs one eager step per input shape.
    """

    def __init__(self, model: Step, compiled: Step, tolerance: float) -> None:
        self.model, self.compiled, self.tolerance = model, compiled, tolerance
        self.checked_shapes: set[torch.Size] = set()
        self.eager_only = False

    def __call__(self, inputs: Tensor) -> Tensor:
        if self.eager_only:
            return self.model(inputs)
        output = self.compiled(inputs)
        if inputs.shape in self.checked_shapes:
            return output
        reference = self.model(inputs)
        gap = float((output - reference).norm() / reference.norm().clamp_min(torch.finfo(reference.dtype).tiny))
        if not gap <= self.tolerance:  # also true for a NaN gap
            warn(
                f"torch.compile changed the model's output for inputs of shape {tuple(inputs.shape)} "
                f"(relative L2 {gap:.2g} from eager, tolerance {self.tolerance:g}); this rollout runs eagerly instead",
                RuntimeWarning,
            )
            self.eager_only = True
            return reference
        self.checked_shapes.add(inputs.shape)
        return output


def _batch_slices(batch_size: int, max_batch: int | None) -> Iterator[slice]:
    chunk = max_batch or max(batch_size, 1)
    for start in range(0, batch_size, chunk):
        yield slice(start, start + chunk)


def _rollout_rows(step: Step, frames: Tensor, trajectory: Tensor, history: int) -> None:
    """Fill ``trajectory`` (the output rows of one chunk) from ``frames``.

    The rollout writes straight into ``trajectory`` when it lives on the
    compute device; otherwise into a buffer there, copied back once at the end.
    """
    buffer = trajectory
    if trajectory.device != frames.device:
        buffer = torch.empty(trajectory.shape, dtype=trajectory.dtype, device=frames.device)
    buffer[:, :history] = frames
    inputs = frames.flatten(1, 2)
    for t in range(buffer.shape[1] - history):
        prediction = step(inputs)
        target = buffer[:, t + history]
        if prediction.shape != target.shape:
            raise EvaluationError(
                f"the model maps input {tuple(inputs.shape)} to {tuple(prediction.shape)}, "
                f"but a rollout needs one frame {tuple(target.shape)}"
            )
        target.copy_(prediction)
        # Feed the model contiguous inputs: a time slice of the trajectory is strided,
        # and strided inputs slow its convolutions down.
        inputs = prediction if history == 1 else buffer[:, t + 1 : t + 1 + history].flatten(1, 2).contiguous()
    if buffer is not trajectory:
        trajectory.copy_(buffer)


def _is_power_of_two(size: int) -> bool:
    return size > 0 and size & (size - 1) == 0
