"""``neuralop-merge finetune``: fine-tune endpoint experts from an anchor checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import TrainingError, first_line
from . import COMMANDS, bounded_int

if TYPE_CHECKING:
    import torch
    from torch.utils.data import DataLoader

# torch, neuraloperator and the families, I/O and training modules are imported by the
# functions that use them, so that --help and argument errors return without loading them.


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "finetune",
        help=COMMANDS["finetune"][1],
        description=(
            "Fine-tune one expert per regime from an anchor, on data simulated from a family "
            "(--family) or read from torch files (--data), and save each expert with its provenance."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--family", help="simulate each regime's data with this family (see `neuralop-merge list`)")
    source.add_argument(
        "--data", action="append", metavar="REGIME=FILE",
        help="torch file {'x': [N,C,H,W], 'y': [N,C,H,W]} of one-step pairs of a regime (repeat per regime)",
    )
    parser.add_argument("--anchor", required=True, type=Path, help="the anchor checkpoint (folder or file)")
    parser.add_argument(
        "--regime", action="append", required=True, metavar="NAME=VALUE",
        help="a regime name and its physical parameter value (repeat, e.g. --regime low=0.01 --regime high=0.1)",
    )
    parser.add_argument("-o", "--out", required=True, type=Path, help="output folder; expert NAME is saved as NAME")
    parser.add_argument("--overwrite", action="store_true", help="replace existing experts of the same names")
    parser.add_argument("--parameter", help="name of the physical parameter (default: the family's, or 'mu')")
    parser.add_argument("--epochs", type=bounded_int(1, 1_000_000), default=10, help="epochs per expert (default 10)")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    parser.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay (default 0)")
    parser.add_argument("--scheduler", choices=("cosine", "constant"), default="cosine", help="learning-rate schedule")
    parser.add_argument("--batch-size", type=bounded_int(1, 1_000_000), default=16, help="batch size (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, shuffling and initialisation (default 0)")
    parser.add_argument(
        "--trainable", action="append", metavar="PATTERN",
        help="fine-tune only parameters matching this fnmatch pattern (repeat; default: all)",
    )
    parser.add_argument("--n-train", type=bounded_int(1, 100_000), default=32, help="--family: training trajectories per regime")
    parser.add_argument("--n-val", type=bounded_int(0, 100_000), default=4, help="--family: held-out trajectories per regime (0: none)")
    parser.add_argument("--resolution", type=bounded_int(4, 4096), default=64, help="--family: grid size")
    parser.add_argument("--n-frames", type=bounded_int(1, 100_000), help="--family: frames per trajectory (default: the family's)")
    parser.add_argument("--checkpoint-dir", type=Path, help="checkpoint every epoch into this folder")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoints in --checkpoint-dir")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def parse_assignments(items: list[str], option: str) -> dict[str, str]:
    """``["NAME=VALUE", ...]`` as a dict, refusing malformed or repeated names."""
    assignments: dict[str, str] = {}
    for item in items:
        name, separator, value = item.partition("=")
        if not (separator and name and value):
            raise TrainingError(f"{option} {item!r} is not NAME=VALUE")
        if name in assignments:
            raise TrainingError(f"{option} gives {name!r} twice")
        assignments[name] = value
    return assignments


def parameter_values(args: argparse.Namespace) -> dict[str, float]:
    """Regime name -> physical parameter value, from ``--regime``."""
    values = {}
    for name, text in parse_assignments(args.regime, "--regime").items():
        try:
            values[name] = float(text)
        except ValueError:
            raise TrainingError(f"--regime {name}={text}: the value must be a number") from None
    return values


def refuse_existing_experts(out: Path, names: list[str], overwrite: bool) -> None:
    """Fail before any training, rather than after it, on a bad expert name or an expert
    that would be overwritten (saving itself is atomic and refuses again)."""
    from ..atomic import check_output_paths
    from ..io import checkpoint_files

    paths = [path for name in names for path in checkpoint_files(out, name).values()]
    check_output_paths(paths, overwrite=overwrite)


def check_anchor_fits(anchor: torch.nn.Module, regimes: dict[str, tuple[float, DataLoader]]) -> None:
    """Run the anchor on one training sample, so that wrong channels fail before any training."""
    import torch

    name, (_, loader) = next(iter(regimes.items()))
    sample = next(iter(loader))
    x, y = sample["x"][:1], sample["y"][:1]
    in_channels = getattr(anchor, "in_channels", None)
    if isinstance(in_channels, int) and x.shape[1] != in_channels:
        raise TrainingError(f"the anchor takes {in_channels} channel(s) but regime {name!r} has {x.shape[1]}")
    try:
        with torch.no_grad():
            dtype = next((p.dtype for p in anchor.parameters() if p.is_floating_point()), x.dtype)
            output = anchor(x.to(dtype))
    except RuntimeError as error:
        raise TrainingError(f"the anchor cannot run on regime {name!r}'s data: {first_line(error)}") from None
    if output.shape != y.shape:
        raise TrainingError(
            f"the anchor maps {tuple(x.shape)} to {tuple(output.shape)}, but regime {name!r} needs {tuple(y.shape)}"
        )


def pairs_loader(path: Path, batch_size: int, seed: int) -> DataLoader:
    """A shuffled loader of the ``{'x', 'y'}`` pairs stored in a torch file."""
    import torch
    from torch.utils.data import DataLoader, StackDataset

    from ..io import safe_load

    pairs = safe_load(path)
    if not (isinstance(pairs, dict) and all(torch.is_tensor(pairs.get(key)) for key in ("x", "y"))):
        raise TrainingError(f"{path} must hold a dict with tensors 'x' and 'y'")
    if pairs["x"].ndim != 4 or pairs["x"].shape != pairs["y"].shape:
        shapes = f"{tuple(pairs['x'].shape)} and {tuple(pairs['y'].shape)}"
        raise TrainingError(f"{path}: 'x' and 'y' must both be [N, C, H, W], got {shapes}")
    generator = torch.Generator().manual_seed(seed)
    dataset = StackDataset(x=pairs["x"], y=pairs["y"])
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator)


def data_file_regimes(args: argparse.Namespace, values: dict[str, float]) -> dict[str, tuple[float, DataLoader]]:
    """Regimes read from ``--data REGIME=FILE``; every ``--regime`` needs exactly one file."""
    files = parse_assignments(args.data, "--data")
    if set(files) != set(values):
        raise TrainingError(f"--data names {sorted(files)} must match --regime names {sorted(values)}")
    return {
        name: (value, pairs_loader(Path(files[name]), args.batch_size, args.seed)) for name, value in values.items()
    }


def family_regimes(
    args: argparse.Namespace, values: dict[str, float]
) -> tuple[dict[str, tuple[float, DataLoader]], dict[str, torch.Tensor]]:
    """Regimes simulated with ``--family``: training loaders and held-out trajectories."""
    from .. import families
    from ..training.seeding import derive_seed

    family = families.get(args.family)
    regimes, validation = {}, {}
    for name, value in values.items():
        train = family.dataset([value], args.n_train, args.resolution, args.n_frames, seed=derive_seed(args.seed, name))
        regimes[name] = (value, train.loader(args.batch_size, shuffle=True, seed=args.seed))
        if args.n_val > 0:
            held_out_seed = derive_seed(args.seed, name, "validation")
            validation[name] = family.dataset(
                [value], args.n_val, args.resolution, args.n_frames, seed=held_out_seed
            ).trajectories
    return regimes, validation


def run(args: argparse.Namespace) -> int:
    from .. import families
    from ..io import load_model, save_model
    from ..training import TrainingSettings, finetune_endpoints

    values = parameter_values(args)
    refuse_existing_experts(args.out, list(values), args.overwrite)
    if args.resume and args.checkpoint_dir is None:
        raise TrainingError("--resume needs --checkpoint-dir")
    anchor = load_model(args.anchor)
    if args.family is not None:
        regimes, validation = family_regimes(args, values)
        parameter = args.parameter or families.get(args.family).parameter.name
    else:
        regimes, validation = data_file_regimes(args, values), {}
        parameter = args.parameter or "mu"
    check_anchor_fits(anchor, regimes)
    settings = TrainingSettings(
        n_epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay, scheduler=args.scheduler, seed=args.seed,
        device=args.device, progress=not args.no_progress,
    )
    experts = finetune_endpoints(
        anchor, regimes, parameter=parameter, settings=settings, trainable=args.trainable, val_trajectories=validation,
        checkpoint_dir=args.checkpoint_dir, resume_from=args.checkpoint_dir if args.resume else None,
    )
    for name, expert in experts.items():
        path = save_model(expert, args.out, name=name, overwrite=args.overwrite)
        losses = expert.provenance["losses"]
        print(f"{name}: {parameter}={values[name]:g}, train loss {losses['train']:.4g} -> {path}")
    return 0
