"""The study pipeline: data -> models -> evaluation per seed, then the report over seeds.

:func:`run_study` runs every seed of a :class:`~.config.StudyConfig` and saves each seed's
:class:`~.records.SeedRecord` as ``records/seed_<s>.json.gz`` the moment it is done, so an
interrupted run resumes where it stopped (a record of another configuration is refused), and running
the same command again redraws the report from the records alone. With ``jobs > 1`` the missing
seeds run in that many worker processes at once; a seed's numbers do not depend on which process ran it.

Seeding: seed ``s`` fixes every random draw of its run: the data of each role
(:func:`.data.data_seed`), each network's initialisation and each training run's order and noise.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import time
from collections.abc import Callable
from concurrent.futures import as_completed
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import write_file
from .config import StudyConfig, StudyConfigError
from .data import generate_data
from .evaluation import evaluate_seed
from .models import train_models
from .records import SNAPSHOT_FILE, SeedRecord
from .report import write_outputs
from .side_by_side import check_fixed_budgets, spawn_pool, train_models_side_by_side

Log = Callable[[str], None]


#: Settings added after records had been written, with the value every earlier configuration meant,
#: by part of the configuration ("" for its top level). At that value a setting stays out of the
#: digest, so that earlier records and caches stay valid.
LATER_SETTINGS: dict[str, dict[str, Any]] = {"train": {"expert_replay": 0.0}, "": {"prefix_n_coarse": 5}}


def config_digest(config: StudyConfig) -> str:
    """A short hash of everything that determines a seed's numbers (the seed list aside)."""
    settings = {key: value for key, value in config.to_dict().items() if key != "seeds"}
    for part, earlier in LATER_SETTINGS.items():
        owner = settings[part] if part else settings
        for key in [key for key in earlier if key in owner and owner[key] == earlier[key]]:
            del owner[key]
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def describe_device(device: str) -> str:
    """``device`` with the accelerator's name, so that a record says what hardware made its numbers."""
    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return device


def run_seed(config: StudyConfig, seed: int, *, device: str = "cpu", progress: bool = True, log: Log = print,
             model_jobs: int = 1) -> SeedRecord:
    """Everything for one seed: data, training (``model_jobs`` runs at once, see :mod:`.side_by_side`), evaluation."""
    started = time.perf_counter()
    log("  simulating the data")
    data = generate_data(config, seed, device=device, progress=progress)
    data_seconds = time.perf_counter() - started
    if model_jobs > 1:
        models = train_models_side_by_side(config, data, seed, device=device, workers=model_jobs, log=log)
    else:
        models = train_models(config, data, seed, device=device, progress=progress, log=log)
    log("  evaluation: validation choices, α sweeps, every method on every test regime")
    start = time.perf_counter()
    record = evaluate_seed(config, data, models, seed, device=device, progress=progress)
    record.steps = models.steps
    record.device = describe_device(device)
    record.seconds = {
        "data": data_seconds, **models.seconds, "evaluation": time.perf_counter() - start,
        "total": time.perf_counter() - started,
    }
    return record


def record_path(out: Path, seed: int) -> Path:
    """Where seed ``seed``'s record is saved: gzip-compressed JSON (``zcat`` reads it), about a third of the JSON."""
    return out / "records" / f"seed_{seed}.json.gz"


def saved_record_path(out: Path, seed: int) -> Path | None:
    """The saved record of ``seed``, if any: the compressed form, or the plain ``seed_<s>.json`` of older runs."""
    compressed = record_path(out, seed)
    return next((path for path in (compressed, compressed.with_suffix("")) if path.exists()), None)


def read_record_payload(path: Path) -> dict[str, Any]:
    """The JSON object saved at ``path`` (gzip-compressed where its name ends in ``.gz``)."""
    try:
        raw = path.read_bytes()
        payload = json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)
    except (OSError, EOFError, ValueError) as error:  # gzip.BadGzipFile is an OSError, JSONDecodeError a ValueError
        raise StudyConfigError(f"cannot read the study record {path}: {error}") from None
    if not isinstance(payload, dict) or "record" not in payload:
        raise StudyConfigError(f"{path} is not a study record (no 'record' entry)")
    return payload


def load_record(path: Path, digest: str) -> SeedRecord:
    """The record saved at ``path`` (see :func:`saved_record_path`) if it belongs to this configuration; refuses one of another."""
    payload = read_record_payload(path)
    if payload.get("config_digest") != digest:
        raise StudyConfigError(f"{path} was written by another study configuration; use another --out or remove it")
    return SeedRecord.from_json(payload["record"])


def save_record(out: Path, record: SeedRecord, digest: str, *, snapshot: bool = True) -> None:
    """Write ``records/seed_<s>.json.gz``; with ``snapshot``, also the record's snapshot arrays unless some are saved."""
    payload = {"config_digest": digest, "record": record.to_json()}
    path = record_path(out, record.seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0: the same record gives the same bytes, whenever it is written.
    data = gzip.compress(json.dumps(payload, separators=(",", ":")).encode("utf-8"), mtime=0)
    write_file(path, lambda handle: handle.write(data), overwrite=False)
    if snapshot and record.snapshot is not None and not (out / SNAPSHOT_FILE).exists():
        snap = record.snapshot
        np.savez_compressed(
            out / SNAPSHOT_FILE, mu=snap["mu"], c=snap["c"], frames=np.asarray(snap["frames"]), seed=record.seed,
            **{f"field_{name}": value.astype(np.float16) for name, value in snap["fields"].items()},
        )


def log_with_prefix(prefix: str, text: str) -> None:
    print(f"{prefix} {text}", flush=True)


def run_seed_in_worker(config: StudyConfig, seed: int, device: str, threads: int, model_jobs: int) -> SeedRecord:
    """:func:`run_seed` in a worker process: its own thread count, no progress bars, log lines tagged with the seed."""
    torch.set_num_threads(threads)
    log = functools.partial(log_with_prefix, f"[seed {seed}]")
    return run_seed(config, seed, device=device, progress=False, log=log, model_jobs=model_jobs)


def run_missing_seeds(config: StudyConfig, missing: list[int], out: Path, digest: str, *, device: str, progress: bool,
                      jobs: int, log: Log, model_jobs: int = 1) -> dict[int, SeedRecord]:
    """Train and evaluate each seed of ``missing``, saving each record the moment it is done.

    The snapshot figure always shows the first missing seed, whichever worker finishes first, so that
    the outputs do not depend on timing.
    """
    records = {}

    def keep(record: SeedRecord) -> None:
        records[record.seed] = record
        save_record(out, record, digest, snapshot=record.seed == missing[0])
        log(f"   seed {record.seed} done in {record.seconds['total']:.0f} s")

    if jobs == 1 or len(missing) == 1:
        for index, seed in enumerate(missing):
            log(f"== {config.family} ({config.scale}) seed {seed} [{index + 1}/{len(missing)} to run] ==")
            keep(run_seed(config, seed, device=device, progress=progress, log=log, model_jobs=model_jobs))
        return records
    log(f"== {config.family} ({config.scale}) seeds {missing}: {min(jobs, len(missing))} worker processes ==")
    with spawn_pool(min(jobs, len(missing))) as pool:
        threads = torch.get_num_threads()
        futures = {pool.submit(run_seed_in_worker, config, seed, device, threads, model_jobs): seed for seed in missing}
        errors = {}
        for future in as_completed(futures):
            seed = futures[future]
            if future.exception() is not None:
                errors[seed] = future.exception()
                log(f"   seed {seed} failed: {errors[seed]!r}")
                continue
            keep(future.result())
    if errors:
        # The finished seeds' records are saved, so rerunning the command runs only the failed seeds.
        raise errors[min(errors)]
    return records


def run_study(config: StudyConfig, out: str | Path, *, device: str = "cpu", progress: bool = True,
              command: str = "", log: Log = print, figures: bool = True, jobs: int = 1, model_jobs: int = 1) -> dict[str, Any]:
    """Run (or resume) every seed of ``config``, then write results.json, results.md and the figures.

    Parameters
    ----------
    jobs
        How many seeds to run at once, each in its own process (default 1: one after another, here).
        Worker processes print their own log lines, tagged with the seed, to standard output (``log``
        cannot cross into them); ``log`` gets the lines of this process.
    model_jobs
        How many of one seed's training runs to run at once, each in its own process (default 1; see
        :mod:`.side_by_side`, which needs every run trained to its step cap). The models are the same.

    Returns
    -------
    dict
        The content of results.json.
    """
    for name, count in (("jobs", jobs), ("model_jobs", model_jobs)):
        if count < 1:
            raise StudyConfigError(f"{name} must be at least 1, got {count}")
    if model_jobs > 1:
        check_fixed_budgets(config)
    out, digest = Path(out), config_digest(config)
    out.mkdir(parents=True, exist_ok=True)
    saved = {seed: saved_record_path(out, seed) for seed in config.seeds}
    records = {seed: None if path is None else load_record(path, digest) for seed, path in saved.items()}
    for seed, path in saved.items():
        if path is not None:
            log(f"== seed {seed}: reusing {path} ==")
    missing = [seed for seed, record in records.items() if record is None]
    if missing:
        records.update(run_missing_seeds(config, missing, out, digest, device=device, progress=progress, jobs=jobs, log=log,
                                         model_jobs=model_jobs))
    return write_outputs(config, [records[seed] for seed in config.seeds], out, command=command, device=device, figures=figures)


__all__ = [
    "config_digest", "describe_device", "load_record", "read_record_payload", "record_path", "run_missing_seeds", "run_seed",
    "run_study", "save_record", "saved_record_path",
]
