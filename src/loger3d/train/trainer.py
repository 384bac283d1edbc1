"""The training loop: curriculum, chunk-recurrent objective, AdamW, checkpoints, logs, DDP.

Several processes under ``torchrun`` (``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` in the environment; NCCL with one
process a GPU, gloo on CPUs or with several processes sharing a GPU: ``process_placement``), or one process.
A step draws ``train.batch_size`` sequences: global-batch slot ``s`` of step ``t`` is the clip
``ClipMixture.sample(t, s)``, and process ``r`` of ``R`` computes the slots ``(m·R + r)·micro_batch + i`` of
micro-step ``m`` (``micro_batch`` is the stage's, or ``train.micro_batch``).
The data is therefore a function of the step, so a run resumed from ``checkpoint.pt`` continues exactly (bit
for bit on a CPU) and R processes see the clips one process would.

A step whose gradient is not finite (NaN or inf) leaves the weights and the optimiser's state alone and is
counted (``skipped_steps``), without the host waiting for the GPU to find out.

Out folder: ``checkpoint.pt`` (model, optimiser, step, balanced loss weights, skipped steps; read with
``weights_only=True``), ``config.yaml``, ``metrics.jsonl``, ``tensorboard/``, ``loss.png`` and, at the end,
``model.safetensors`` (the weights alone, loadable with ``loger3d.load_model``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass, replace

import torch
import torch.distributed as dist
import yaml

from ..config import ModelConfig, get_config
from ..errors import LogerError
from ..model.loger import LoGeR
from ..util.atomic import atomic_open, stream_safetensors
from ..weights import read_state_dict
from ..weights.registry import ModelCard, card_options
from .balance import LossBalance, shared_parameters, term_gradient_norms
from .checkpoint_writer import CheckpointWriter
from .clip import Clip
from .config import TrainConfig
from .curriculum import Curriculum, Stage, window_for_chunks
from .graphed import GraphedMicroSteps
from .init import MEMORY_PREFIXES, init_from_pi3_, init_from_scratch_
from .loader import BatchLoader
from .log import MetricsLog
from .losses import LossConfig, read_stats
from .mixture import mixture_from_config
from .optim import build_optimizer, lr_factor
from .recurrent import SequenceObjective

__all__ = ["TrainingError", "TrainResult", "Trainer", "build_training_model", "model_config"]

_RUN_ONLY = {("train", k) for k in ("max_minutes", "stop_at", "log_every", "checkpoint_every", "device", "fast_path",
                                    "activation_checkpointing", "cuda_graphs", "keep_stage_weights")}
"""Settings that may differ between a run and its resumption: where, how fast and in how much memory it runs,
not what it trains (the device and the fast path round differently; checkpointing recomputes exactly; CUDA
graphs replay the same kernels, with the camera head's SVD-free rotation, equal within fp32 rounding)."""
_STAGE_RUN_ONLY = ("activation_checkpointing", "cuda_graphs")


class TrainingError(LogerError, ValueError):
    """A training run that cannot start or continue; the message says what to change."""


@dataclass
class TrainResult:
    step: int
    total_steps: int
    finished: bool
    last: dict


def model_config(config: TrainConfig) -> ModelConfig:
    """The architecture: the preset with ``model.options`` applied."""
    preset = get_config(config.model.preset)  # an unknown name is an InputError listing the presets
    try:
        return replace(preset, **{k: tuple(v) if isinstance(v, list) else v for k, v in config.model.options.items()})
    except (TypeError, ValueError) as e:  # an unknown field, or a value ModelConfig refuses
        raise TrainingError(f"model.options: {e}") from None


def build_training_model(config: TrainConfig) -> LoGeR:
    """The model of ``config.model`` with its initial weights, in fp32 on the CPU."""
    spec = config.model
    model = LoGeR(model_config(config))
    if spec.init == "scratch":
        init_from_scratch_(model, spec.seed)
    elif spec.init.startswith("pi3:"):
        init_from_pi3_(model, spec.init[4:])
    elif spec.init.startswith("weights:"):
        state = {k: v.float() if v.is_floating_point() else v for k, v in read_state_dict(spec.init[8:]).items()}
        own = model.state_dict()
        dropped = [k for k in state if k not in own]
        if any(not k.startswith(MEMORY_PREFIXES) for k in dropped):
            raise TrainingError(f"{spec.init[8:]} does not fit model {spec.preset!r} with options "
                                f"{spec.options}: unexpected keys such as {dropped[0]}")
        model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=True)
    else:
        raise TrainingError(f"model.init must be scratch, pi3:PATH or weights:PATH, got {spec.init!r}")
    return model


def process_placement(requested: str, local_rank: int, local_world: int, gpus: int) -> tuple[torch.device, str]:
    """The device of local process ``local_rank`` of ``local_world`` on a host with ``gpus`` GPUs, and the process
    group's backend. ``requested`` is ``train.device``: ``auto`` takes the GPUs if there are any. Processes take
    the GPUs in turn, so more processes than GPUs share them (with CUDA MPS their kernels run side by side, which
    helps launch-bound steps); NCCL refuses two processes on one GPU, so a shared GPU reduces through gloo."""
    if requested == "auto":
        requested = "cuda" if gpus else "cpu"
    device = torch.device(requested)
    if device.type != "cuda":
        return device, "gloo"
    if not gpus:
        raise TrainingError(f"train.device is {requested} but no CUDA GPU is visible; use train.device=cpu")
    if device.index is None:
        return torch.device("cuda", local_rank % gpus), "gloo" if local_world > gpus else "nccl"
    return device, "gloo" if local_world > 1 else "nccl"


def _distributed(requested: str) -> tuple[int, int, torch.device]:
    """``(world_size, rank, device)`` from torchrun's environment, initialising the process group once."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device, backend = process_placement(requested, local_rank, int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
                                        torch.cuda.device_count())
    if world == 1:
        return 1, 0, device
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return dist.get_world_size(), dist.get_rank(), device


def comparable_config(config: dict) -> dict:
    """``config`` without what a resumed run may change (``_RUN_ONLY``, and each stage's ``_STAGE_RUN_ONLY``)."""
    out = {s: {k: v for k, v in sec.items() if (s, k) not in _RUN_ONLY} if isinstance(sec, dict) else sec
           for s, sec in config.items()}
    out["curriculum"] = [{k: v for k, v in stage.items() if k not in _STAGE_RUN_ONLY}
                         for stage in config.get("curriculum", [])]
    return out


class Trainer:
    """``Trainer(config, out, resume=False).run()``; see the module docstring."""

    def __init__(self, config: TrainConfig, out: str | os.PathLike, resume: bool = False,
                 progress: bool = True) -> None:
        self.config = config
        self.out = os.fspath(out)
        tcfg = config.train
        self.world, self.rank, self.device = _distributed(tcfg.device)
        self.main = self.rank == 0
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        precision = tcfg.precision
        if precision == "auto":
            precision = "bf16" if self.device.type == "cuda" else "fp32"
        if precision == "bf16" and self.device.type != "cuda":
            raise TrainingError("precision bf16 needs a CUDA device; use train.precision=fp32 on a CPU")
        self.precision = precision
        for stage in config.curriculum:
            micro = self._micro_batch(stage)
            if tcfg.batch_size % (self.world * micro):
                raise TrainingError(f"train.batch_size {tcfg.batch_size} is not a multiple of processes × micro_batch "
                                    f"= {self.world} × {micro}; change batch_size or micro_batch")
        self.curriculum = Curriculum(config.curriculum, config.data.seed)
        self.mixture = mixture_from_config(config.data)
        self.progress = progress and self.main

        checkpoint = os.path.join(self.out, "checkpoint.pt")
        state = None
        if os.path.exists(checkpoint):
            if not resume:
                raise TrainingError(f"{self.out} already holds a training run; continue it with --resume or "
                                    "choose another --out")
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
            saved = comparable_config(yaml.safe_load(state["config"]))
            current = comparable_config(yaml.safe_load(yaml.safe_dump(config.to_dict())))  # tuples read back as lists
            if saved != current:
                changed = sorted(s for s in current if saved.get(s) != current[s])
                raise TrainingError(f"cannot resume {self.out}: its config differs in section(s) {', '.join(changed)};"
                                    " resume with the same config (only "
                                    f"{', '.join('train.' + k for _, k in sorted(_RUN_ONLY))} may change)")
        elif resume and self.main:
            print(f"nothing to resume in {self.out}; starting a new run")
        os.makedirs(self.out, exist_ok=True)

        model = build_training_model(config) if state is None else LoGeR(model_config(config))
        if state is not None:
            model.load_state_dict(state["model"])
        model.to(self.device).train()
        self.checkpointing = tcfg.activation_checkpointing  # each stage may set its own (train_step)
        model.set_activation_checkpointing(self.checkpointing)
        if tcfg.fast_path and self.device.type == "cuda":
            model.set_fast_path()
        self.model = model
        graphed_stages = any(self._graphs(s) for s in config.curriculum)
        if graphed_stages:
            # The SVD checks its convergence on the host, which a CUDA graph cannot record: the whole run finds
            # its rotations by products instead (the same rotations within fp32 rounding).
            model.camera_head.sync_free = True
        self.optimizer = build_optimizer(model, config.optim)
        if graphed_stages and self.world > 1:
            raise TrainingError("train.cuda_graphs records one process's micro-steps; with several processes "
                                "run without it (--set train.cuda_graphs=false and no stage's cuda_graphs)")
        self.graphed: GraphedMicroSteps | None = None  # made at the first step that replays graphs
        if state is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"]) if state is not None else 0
        # Steps whose gradient was not finite and so left the weights alone (a device counter: no host wait).
        self.skipped_steps = torch.tensor(int(state.get("skipped_steps", 0)) if state is not None else 0,
                                          device=self.device)
        self._updating = False
        self._writer = CheckpointWriter()
        objective = SequenceObjective(model, config.loss, tcfg.recurrent)
        self.chunk_loss = objective.loss  # its settings follow the curriculum stage (Stage.loss) and the balance
        self.balance = LossBalance()
        if state is not None and "loss_balance" in state:
            self.balance.load_state_dict(state["loss_balance"])
        self._plain_objective = objective  # for the balance's extra passes (outside DDP)
        if self.world > 1:
            # DDP wants every parameter on one device; the fast path parks the frozen to_qkv_stack on the host.
            for layer in model.ttt_layers:
                layer.to_qkv_stack.to(self.device)
            ids = [self.device.index] if self.device.type == "cuda" else None
            objective = torch.nn.parallel.DistributedDataParallel(objective, device_ids=ids)
        self.objective = objective
        if self.main:
            with atomic_open(os.path.join(self.out, "config.yaml"), "w") as f:
                yaml.safe_dump(config.to_dict(), f, sort_keys=False)
        self.log = MetricsLog(self.out, enabled=self.main, resume_step=self.step)
        self.loader = BatchLoader(self.mixture, self.curriculum, self.micro_batches, self.device, self.step)

    # ------------------------------------------------------------------ state
    @property
    def total_steps(self) -> int:
        return self.curriculum.total_steps

    def save_checkpoint(self, background: bool = False) -> None:
        """``checkpoint.pt`` of this step, written atomically; with ``background`` by a thread while training goes
        on (``CheckpointWriter``), else before returning."""
        if self.main:
            self._writer.save(os.path.join(self.out, "checkpoint.pt"), {
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "step": self.step,
                "config": yaml.safe_dump(self.config.to_dict(), sort_keys=False), "world_size": self.world,
                "loss_balance": self.balance.state_dict(), "skipped_steps": int(self.skipped_steps)})
            if not background:
                self._writer.wait()
            self.log.flush(plot=not background)  # periodic ones redraw loss.png at most once a minute
        if self.world > 1:
            dist.barrier()

    def export_weights(self, name: str = "model.safetensors") -> str:
        """``name`` in the run folder: the weights alone, fp32, keys of the preset, with the card (rank 0 writes)."""
        path = os.path.join(self.out, name)
        if self.main:
            tensors = {k: v.detach().float().contiguous().cpu() for k, v in self.model.state_dict().items()}
            metadata = {"preset": self.config.model.preset, "step": str(self.step), **self.model_card().to_metadata()}
            stream_safetensors(path, tensors, metadata)
        return path

    def model_card(self) -> ModelCard:
        """The card the exported weights carry: run as the last curriculum stage cut its sequences, at the
        training size."""
        last = self.config.curriculum[-1]
        chunks = last.chunks[1] if isinstance(last.chunks, tuple) else last.chunks
        window = last.window or window_for_chunks(last.frames, chunks or 1, last.overlap)
        data = self.config.data
        return ModelCard(os.path.basename(os.path.normpath(self.out)), self.config.model.preset, window,
                         min(last.overlap, window - 1), self.config.train.align,
                         training_size=(data.width, data.height), about=f"trained with loger3d train for {self.step} "
                                                                        "steps",
                         options=card_options(self.config.model.options))

    # ------------------------------------------------------------------ steps
    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _micro_batch(self, stage: Stage) -> int:
        """Sequences per micro-step in ``stage``: its own ``micro_batch``, else ``train.micro_batch``."""
        return stage.micro_batch or self.config.train.micro_batch

    def _stage_setting(self, stage: Stage, name: str) -> bool:
        """A setting a stage may override (``activation_checkpointing``, ``cuda_graphs``): the stage's own value,
        else the ``train`` section's."""
        own = getattr(stage, name)
        return getattr(self.config.train, name) if own is None else own

    def _checkpointing(self, stage: Stage) -> bool:
        """Whether ``stage`` recomputes activations."""
        return self._stage_setting(stage, "activation_checkpointing")

    def _graphs(self, stage: Stage) -> bool:
        """Whether ``stage`` replays its micro-steps as CUDA graphs (on a GPU only)."""
        return self.device.type == "cuda" and self._stage_setting(stage, "cuda_graphs")

    def _graphed(self) -> GraphedMicroSteps:
        if self.graphed is None:
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            self.graphed = GraphedMicroSteps(self._plain_objective, self.chunk_loss, params, self._autocast,
                                             self.device)
        return self.graphed

    def micro_batches(self, step: int) -> list[list[int]]:
        """This process's global-batch slots at ``step``, one list per micro-step (the stage's micro-batch)."""
        micro = self._micro_batch(self.curriculum.at(step)[0])
        steps = self.config.train.batch_size // (self.world * micro)
        return [[(m * self.world + self.rank) * micro + i for i in range(micro)] for m in range(steps)]

    def _rebalance(self, batch: Clip, loss_cfg: LossConfig, window: int, overlap: int) -> None:
        """Update the balanced weights from the terms' gradients on ``batch``, the first micro-batch. Process 0
        measures and sends the result to the others: its first micro-batch is the one a single process
        measures on, so the weights do not depend on the number of processes."""

        def loss_of(term_cfg: LossConfig) -> torch.Tensor:
            self.chunk_loss.cfg = term_cfg
            with self._autocast():
                return self._plain_objective(batch.images, batch.local_points, batch.poses, batch.valid, window,
                                             overlap)[0]

        if self.main:
            norms = term_gradient_norms(loss_of, shared_parameters(self.model), loss_cfg)
        else:
            norms = torch.zeros(3, device=self.device)
        if self.world > 1:
            dist.broadcast(norms, 0)
        self.balance.update(norms, loss_cfg)

    def train_step(self) -> dict:
        """One optimiser step at ``self.step``; returns its logged record, the losses and the gradient norm as
        0-dim tensors still on the device (``losses.read_stats`` reads them): the step itself never waits for
        the GPU, so the host queues the next step's work while the GPU runs this one's."""
        cfg = self.config
        stage, window = self.curriculum.at(self.step)
        if (checkpointing := self._checkpointing(stage)) != self.checkpointing:
            self.checkpointing = checkpointing
            self.model.set_activation_checkpointing(checkpointing)
        loss_cfg = stage.loss_config(cfg.loss)
        balancing = loss_cfg.balance_every > 0
        self.chunk_loss.cfg = self.balance.apply(loss_cfg) if balancing else loss_cfg
        factor = lr_factor(self.step, self.total_steps, cfg.optim)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        self.optimizer.zero_grad(set_to_none=True)
        started = time.perf_counter()
        data_time = 0.0
        sums: dict[str, torch.Tensor | float] = {}
        accumulation = len(self.micro_batches(self.step))
        graphed = self._graphed() if self._graphs(stage) else None
        if graphed is not None:
            graphed.begin_step()
        for m in range(accumulation):
            t0 = time.perf_counter()
            batch = self.loader.get(self.step, m)
            data_time += time.perf_counter() - t0
            if m == 0 and balancing and self.step % loss_cfg.balance_every == 0:
                self._rebalance(batch, loss_cfg, window, stage.overlap)
                self.chunk_loss.cfg = self.balance.apply(loss_cfg)
            if graphed is not None:
                stats = graphed.run(batch, window, stage.overlap, accumulation, self.chunk_loss.cfg)
            else:
                stats = self._eager_micro_step(batch, window, stage.overlap, accumulation, m)
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v / accumulation
        if graphed is not None:
            graphed.end_step()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip) if cfg.optim.grad_clip > 0 \
            else torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
        finite = torch.isfinite(grad_norm)
        self.skipped_steps = self.skipped_steps + (~finite).to(torch.int64)
        self._updating = True  # parameters are mid-update until the step counter moves
        if self.optimizer.defaults.get("fused"):
            # A NaN or infinite gradient skips the update on the device (moments, step counts and weights left
            # as they were), without the host waiting to look.
            self.optimizer.found_inf = (~finite).float()
            self.optimizer.step()
        elif bool(finite):  # unfused (the CPU's): looked at on the host
            self.optimizer.step()
        self.step += 1
        self._updating = False
        if self.world > 1:  # log the mean over processes
            keys = sorted(sums)
            values = torch.stack([v.double() if isinstance(v, torch.Tensor)
                                  else torch.full((), v, dtype=torch.float64, device=self.device)
                                  for v in (sums[k] for k in keys)])
            dist.all_reduce(values)
            sums = dict(zip(keys, values / self.world))
        elapsed = time.perf_counter() - started
        extra = {"gpu_peak_gib": torch.cuda.max_memory_allocated(self.device) / 2**30} \
            if self.device.type == "cuda" else {}
        if balancing:
            applied = self.chunk_loss.cfg
            extra.update(trans_weight=applied.pose_weight * applied.trans_weight,
                         rot_weight=applied.pose_weight * applied.rot_weight)
        return {"step": self.step, "stage": self.curriculum.stage_index(self.step - 1), "frames": stage.frames,
                "window": window, **sums, "grad_norm": grad_norm.detach(), "skipped_steps": self.skipped_steps,
                "lr": cfg.optim.lr * factor,
                "step_time": elapsed, "data_time": data_time, **extra}

    def _eager_micro_step(self, batch: Clip, window: int, overlap: int, accumulation: int, m: int) -> dict:
        """Micro-step ``m``: forward and backward, gradients added into ``.grad`` (DDP reduces at the last)."""
        sync = contextlib.nullcontext()
        if self.world > 1 and m < accumulation - 1:
            sync = self.objective.no_sync()
        with sync:
            with self._autocast():
                loss, stats = self.objective(batch.images, batch.local_points, batch.poses, batch.valid, window,
                                             overlap)
            (loss / accumulation).backward()
        return stats

    def _save_completed(self, saved_at: int) -> int:
        """On the way out of an interrupted or failed step: checkpoint the last completed step unless it is saved
        already or the failure hit ``optimizer.step`` itself (the parameters are then half updated and the previous
        checkpoint stands). Returns the step the checkpoint holds."""
        if self.step != saved_at and not self._updating:
            self.save_checkpoint()
            return self.step
        self._writer.wait()
        return saved_at

    def _out_of_memory(self, saved_at: int) -> str:
        """What to change when step ``self.step`` ran out of GPU memory, and where the run can continue."""
        stage, window = self.curriculum.at(self.step)
        fixes = ["lower its micro_batch"]
        if not self._checkpointing(stage):
            fixes.append("turn on its activation_checkpointing")
        if self._graphs(stage):
            fixes.append("turn off its cuda_graphs (a graph keeps its activations beside an eager pass's)")
        advice = f"{', '.join(fixes[:-1])} or {fixes[-1]}" if len(fixes) > 1 else fixes[0]
        return (f"out of GPU memory at step {self.step}, curriculum stage {self.curriculum.stage_index(self.step) + 1}"
                f" ({stage.frames}-frame sequences in chunks of {window}, micro-batch {self._micro_batch(stage)}): "
                f"{advice}; then continue with --resume (checkpoint at step {saved_at})")

    def _should_stop(self, started: float, longest_step: float) -> bool:
        """Out of ``train.max_minutes``, or at the end of a stage with less time left than the longest step this
        process has taken: the next stage's first step compiles its shapes (minutes on a GPU), and begun so late
        it would run a piece of at most N minutes past N."""
        limit = self.config.train.max_minutes
        if limit is None:
            return False
        left = 60 * limit - (time.perf_counter() - started)
        at_stage_end = self.step in self.curriculum.ends[:-1]
        stop = left < 0 or (at_stage_end and left < longest_step)
        if self.world > 1:
            # Process 0's clock decides for all, at logged steps and stage ends only: agreeing waits for the GPU.
            if self.step % self.config.train.log_every and not at_stage_end:
                return False
            flag = torch.full((1,), float(stop), device=self.device)
            dist.broadcast(flag, 0)
            stop = bool(flag.item())
        return stop

    def run(self) -> TrainResult:
        """Train to the end of the curriculum, ``train.stop_at`` or ``train.max_minutes``; checkpoint on the way
        out."""
        from tqdm import tqdm

        cfg = self.config.train
        started = time.perf_counter()
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not self.progress, unit="step",
                   dynamic_ncols=True)
        last: dict = {}
        saved_at = self.step
        since, frames = time.perf_counter(), 0  # the frames trained since the last logged step
        warned = int(self.skipped_steps)  # skipped steps already reported
        end = min(self.total_steps, cfg.stop_at or self.total_steps)  # a run resumed at its stop_at trains nothing
        longest_step = 0.0  # host seconds; a stage's first step holds its compile
        try:
            while self.step < end:
                step_began = time.perf_counter()
                last = self.train_step()
                longest_step = max(longest_step, time.perf_counter() - step_began)
                frames += cfg.batch_size * last["frames"]
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                    last = read_stats(last)  # the loop's only wait for the GPU, once per logged step
                    # A step's own time is the host's: the GPU may still run it. Between two waits it is not.
                    now = time.perf_counter()
                    last["interval_s"], last["frames_per_s"] = now - since, frames / (now - since)
                    since, frames = now, 0
                    self.log.log(last)
                    if last["skipped_steps"] > warned and self.main:
                        warned = int(last["skipped_steps"])
                        tqdm.write(f"warning: by step {self.step}, {warned} step(s) had a gradient that was not finite "
                                   "(NaN or inf) and left the weights unchanged", file=sys.stderr)
                    bar.set_postfix(loss=f"{last['total']:.4f}", fps=f"{last['frames_per_s']:.0f}")
                if cfg.keep_stage_weights and self.step in self.curriculum.ends[:-1]:
                    self.export_weights(f"model_step{self.step}.safetensors")
                if self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint(background=True)
                    saved_at = self.step
                if self._should_stop(started, longest_step):
                    break
        except KeyboardInterrupt:
            bar.close()
            self._save_completed(saved_at)
            raise
        except torch.OutOfMemoryError:
            bar.close()
            raise TrainingError(self._out_of_memory(self._save_completed(saved_at))) from None
        finally:
            bar.close()
            self.loader.close()
            self._writer.join()  # a checkpoint being written is finished on every way out
        self._writer.wait()
        last = read_stats(last)
        if self.step != saved_at or self.step == self.total_steps:
            self.save_checkpoint()
        finished = self.step >= self.total_steps
        if finished:
            self.export_weights()
        self.log.close()
        return TrainResult(self.step, self.total_steps, finished, last)
