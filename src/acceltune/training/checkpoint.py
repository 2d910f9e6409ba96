"""Resumable, atomic checkpoints: a step directory is written under a temporary name and renamed
into place, and the `latest` pointer is replaced atomically, so a crash mid-write never destroys
the last good checkpoint. Accelerate saves model, optimizer, scheduler, scaler and every rank's RNG.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from acceltune.errors import UserError
from acceltune.modeldir import atomic_write_text

STATE_FILE = "trainer_state.json"


@dataclass
class TrainerState:
    global_step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    """Batches of the current epoch already consumed (the sampler resumes after them)."""
    samples_seen: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    train_seconds: float = 0.0
    world_size: int | None = None
    """Processes that wrote the checkpoint (None in checkpoints older than this field)."""
    history: list[dict] = field(default_factory=list)


#: Settings that decide which examples form which batch, in which order: a resumed run must keep them,
#: or its position inside the epoch would point at other examples (epochs may change: a run can be extended).
RESUME_INVARIANTS = {
    "data": ("validation_fraction", "test_fraction", "max_held_out", "max_examples", "tokenize"),
    "train": ("batch_size", "grad_accumulation", "seed", "group_by_length"),
}


def check_resumable(path: Path, config: dict, world_size: int) -> None:
    """UserError naming every setting (and the world size) that differs from the run that wrote ``path``."""
    import yaml

    try:
        saved = yaml.safe_load((path / "training_config.yaml").read_text()) or {}
        written_by = json.loads((path / STATE_FILE).read_text()).get("world_size")
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise UserError(f"cannot resume from {path}: {e.__class__.__name__} (the checkpoint is damaged)") from None
    changed = [f"--{name.replace('_', '-')} {saved.get(group, {}).get(name)!r} -> {config[group][name]!r}"
               for group, names in RESUME_INVARIANTS.items() for name in names
               if name in saved.get(group, {}) and saved[group][name] != config[group][name]]
    if written_by is not None and written_by != world_size:
        changed.append(f"world size {written_by} -> {world_size}")
    if changed:
        raise UserError(f"--resume with settings that change the batches ({'; '.join(changed)}): resume with the "
                        "checkpoint's settings (see its training_config.yaml), or start a new run with --overwrite")


def checkpoint_root(output_dir: Path) -> Path:
    return output_dir / "checkpoints"


def latest_checkpoint(output_dir: Path) -> Path | None:
    pointer = checkpoint_root(output_dir) / "latest"
    if not pointer.is_file():
        return None
    path = checkpoint_root(output_dir) / pointer.read_text().strip()
    return path if (path / STATE_FILE).is_file() else None


def save_checkpoint(accelerator, output_dir: Path, state: TrainerState, config_yaml: str, keep: int = 1) -> Path:
    root = checkpoint_root(output_dir)
    name = f"step-{state.global_step:08d}"
    tmp, final = root / f".tmp-{name}", root / name
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        atomic_write_text(tmp / STATE_FILE, json.dumps(asdict(state)))
        atomic_write_text(tmp / "training_config.yaml", config_yaml)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        atomic_write_text(root / "latest", name)
        steps = sorted(p for p in root.glob("step-*") if p.is_dir())
        for old in steps[:-keep] if keep > 0 else []:
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path: Path) -> TrainerState:
    try:
        accelerator.load_state(str(path))
        raw = json.loads((path / STATE_FILE).read_text())
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise UserError(f"cannot resume from {path}: {e.__class__.__name__}: {str(e).splitlines()[0][:160]} (the checkpoint is damaged or from a different model/config)") from None
    return TrainerState(**raw)
