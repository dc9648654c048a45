"""The forecast engine shared by :class:`ForecastSGD` and :class:`Forecast`: schedule, history, jumps, state.

Timing (t counts calls of ``step()`` from 1): at the end of step t, if ``t % record_every == 0`` the parameters
are recorded; then if ``t % jump_every == 0``, the window is full and this step updated some parameter, those
parameters are overwritten with the forecast for step ``t + horizon`` (``horizon`` the schedule's entry for the
j-th jump made, see :mod:`weightcast.schedules`) and every window is emptied (it refills before the next jump).
A jump step at which nothing was updated is no jump: nothing is counted, hooked or emptied. A jump is
all-or-nothing across buckets: if any forecast would hold a non-finite value, nothing is written, a warning is
given once and ``num_skipped_jumps`` counts it.

Steps ``torch.amp.GradScaler`` skips are not counted. With a fused base optimizer the scaler hands ``step()`` its
``found_inf`` flag on the device and the kernel skips the update; reading that flag on the host at every step
would add a device-to-host sync to every step, which is what the fused path exists to avoid. So such steps are
held: their skip flags are summed on the device and read once, at the step that would be the next record or jump
step if none of them was skipped (:meth:`ForecastEngine.settle`), about once per ``record_every`` steps; a held
step that turns out skipped only moves the record and jump steps later, as a skipped step does on the other paths.

How parameters, history and kernels relate: see :mod:`weightcast.history` (the parameters stay the user's
tensors; the engine owns the history; record and jump are multi-tensor ops over the parameters as they are).

The engine's state travels in the optimizer's ``state_dict`` as ``state_dict["param_groups"][0]["forecast"]``:
inside a param group, because that is what checkpoint tools that re-key optimizer state
(``torch.distributed.checkpoint.state_dict``, Accelerate) carry over untouched.
"""
from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import Any

import torch

from .. import forecasters as forecaster_registry
from .. import ops
from ..forecasters.base import capped_default_horizon, check_serves
from ..history import Bucket, local_tensor
from ..schedules import Schedule, as_int, as_schedule, from_spec
from .guard import JumpGuard

AFTER_JUMP = ("keep", "reset", "scale")
MOMENTUM_KEYS = ("momentum_buffer", "exp_avg")  # the per-parameter state that after_jump resets or scales


def resolve_schedule(window, record_every, jump_every, horizon, forecaster=None) -> tuple[int, int, int, Schedule]:
    """Validate the schedule and fill defaults: jump_every = window * record_every, horizon = jump_every (capped
    at ``forecaster``'s trained range when one is given: :func:`.forecasters.base.capped_default_horizon`).

    Returns (window, record_every, jump_every, horizon schedule); numpy and torch integers are accepted."""
    window = as_int("window", window, 2)
    if window > ops.lincomb_forecast_max_window:
        raise ValueError(f"window must be <= {ops.lincomb_forecast_max_window}, got {window}")
    record_every = as_int("record_every", record_every, 1)
    jump_every = window * record_every if jump_every is None else as_int("jump_every", jump_every, 1)
    if jump_every % record_every:
        raise ValueError(f"jump_every ({jump_every}) must be a multiple of record_every ({record_every}) so that "
                         "the snapshot of the jump step is in the window")
    if horizon is None and forecaster is not None:
        horizon = capped_default_horizon(forecaster, record_every, jump_every)
    schedule = as_schedule(horizon, jump_every)
    schedule.bind(record_every, jump_every)
    return window, record_every, jump_every, schedule


def is_no_op_step(optimizer: torch.optim.Optimizer) -> bool:
    """True for a step that cannot move anything: every group's lr is 0 and every gradient is zero or None. Such a
    step (e.g. the initialisation step of torch.distributed.checkpoint.state_dict) is not counted by the forecast
    schedule and records nothing. An lr tensor on an accelerator is taken as non-zero without reading it (a read
    would sync at every step)."""
    for group in optimizer.param_groups:
        lr = group.get("lr", None)
        if lr is None or (isinstance(lr, torch.Tensor) and lr.device.type != "cpu") or float(lr) != 0.0:
            return False
    return all(p.grad is None or not bool(p.grad.any()) for g in optimizer.param_groups for p in g["params"])


def exact_history(bucket: Bucket) -> bool:
    """True when the newest slot holds the parameters bit for bit (raw snapshots in their own dtype)."""
    return bucket.recorder is None and bucket.storage_dtype == bucket.dtype


def carry_window(old: list[Bucket], new: Bucket) -> None:
    """Copy the recorded window of ``new``'s parameters from the buckets ``old`` they were in (cast to ``new``'s
    storage dtype), when every one of them was recorded as raw snapshots with the same rows; otherwise ``new``
    starts an empty window."""
    where = {id(p): (b, i) for b in old for i, p in enumerate(b.params)}
    sources = [where.get(id(p)) for p in new.params]
    if new.recorder is not None or any(s is None or s[0].recorder is not None or
                                       s[0].history.shape[0] != new.history.shape[0] or
                                       s[0].numels[s[1]] != new.numels[k] for k, s in enumerate(sources)):
        return
    if len({(b.filled, b.head, tuple(b.slot_steps)) for b, _ in sources}) > 1:
        return
    with torch.no_grad():
        for k, (b, i) in enumerate(sources):
            new.history[:, new.segment(k)] = b.history[:, b.segment(i)]
        new.slot_absmax.copy_(new.history.float().abs().amax(1))
    first = sources[0][0] if sources else None
    if first is not None:
        new.slot_steps, new.filled, new.head = list(first.slot_steps), first.filled, first.head


class ForecastEngine:
    """Buckets, history and jump schedule for the param groups of one optimizer.

    The engine owns the history (one :class:`weightcast.history.Bucket` per param group, device and dtype); the
    parameters stay the user's tensors. Before recording or jumping it checks that the param groups still look as
    they did (a parameter moved to another dtype or device, a group added to a wrapped optimizer) and rebuilds
    what changed, carrying the recorded window over (cast to the new dtype).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, forecaster, window: int, record_every: int | None,
                 jump_every: int | None, horizon: int | None, after_jump: str):
        if after_jump not in AFTER_JUMP:
            raise ValueError(f"after_jump must be one of {AFTER_JUMP}, got {after_jump!r}")
        self.optimizer = optimizer
        self.forecaster = forecaster_registry.get(forecaster)
        if record_every is None:  # the spacing a learned forecaster was trained for, else every step
            record_every = self.forecaster.default_record_every() or 1
        self.window, self.record_every, self.jump_every, self.horizon = resolve_schedule(
            window, record_every, jump_every, horizon, self.forecaster)
        check_serves(self.forecaster, self.window, self.record_every, self.horizon.max_horizon())
        self.after_jump = after_jump
        self._step_count = 0
        self._held_steps, self._held_skips = 0, None  # fused GradScaler steps not counted yet (module docstring)
        self.num_jumps = 0
        self.num_skipped_jumps = 0
        self._warned_skip = False
        self.num_rejected_jumps = 0
        self.guard: JumpGuard | None = None
        self.jump_pre_hooks: OrderedDict[int, Any] = OrderedDict()
        self.jump_post_hooks: OrderedDict[int, Any] = OrderedDict()
        self.buckets: list[tuple[int, Bucket]] = []
        self._group_params: list[list[torch.Tensor]] = []
        self.refresh()

    def __getstate__(self) -> dict[str, Any]:
        """Pickle / deepcopy: everything but the guard and the jump hooks (callables, as torch optimizers leave
        their hooks out)."""
        state = dict(self.__dict__)
        state.update(guard=None, jump_pre_hooks=OrderedDict(), jump_post_hooks=OrderedDict())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle, also an engine pickled before steps could be held (its count was ``step_count``)."""
        if "step_count" in state:
            state["_step_count"] = state.pop("step_count")
        state.setdefault("_held_steps", 0)
        state.setdefault("_held_skips", None)
        self.__dict__.update(state)

    @property
    def step_count(self) -> int:
        """Steps counted so far (held steps settled first: :meth:`settle`)."""
        self.settle()
        return self._step_count

    @step_count.setter
    def step_count(self, value: int) -> None:
        self._step_count, self._held_steps, self._held_skips = int(value), 0, None

    def settle(self) -> None:
        """Count the held fused steps: the ones whose ``found_inf`` was 0 (one host read of their summed flags)."""
        if self._held_steps:
            self._step_count += self._held_steps - int(self._held_skips)
            self._held_steps, self._held_skips = 0, None

    @property
    def jumps_made(self) -> int:
        """Jumps tried so far: applied, skipped (not finite) or rejected (by the guard)."""
        return self.num_jumps + self.num_skipped_jumps + self.num_rejected_jumps

    def next_horizon(self) -> int:
        """Horizon (steps) of the next jump: the schedule's entry ``j = jumps_made`` (the j-th jump, 0-based).
        The counters are saved in the state_dict, so a resumed run gets the same horizons."""
        return self.horizon.horizon(self.jumps_made)

    def _make_buckets(self, index: int, group: dict[str, Any]) -> list[Bucket]:
        by_kind: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
        for p in group["params"]:
            if not p.is_floating_point():
                raise TypeError(f"forecasting needs floating-point parameters, got {p.dtype}")
            t = local_tensor(p)
            by_kind.setdefault((t.device, t.dtype), []).append(p)
        buckets = []
        for params in by_kind.values():
            bucket = Bucket(params, self.window, self.forecaster.history_dtype)
            if bucket.sharded and not self.forecaster.forecasts_are_linear():
                raise ValueError(f"forecaster {self.forecaster.name!r} uses whole tensors (per-tensor statistics or "
                                 "tokens) and cannot forecast DTensor (FSDP2) shards element by element; use a "
                                 "forecaster linear in the history ('linear', 'farcast')")
            self.forecaster.attach(bucket)
            buckets.append(bucket)
        return buckets

    def refresh(self) -> None:
        """Build buckets for new param groups and rebuild those whose parameters changed (dtype, device, shape,
        or the group's list of parameters), carrying the recorded window over."""
        groups = self.optimizer.param_groups
        for index, group in enumerate(groups):
            params = list(group["params"])
            if index >= len(self._group_params):
                fresh = self._make_buckets(index, group)   # may refuse the group: nothing is changed then
                self._group_params.append(params)
                self.buckets += [(index, b) for b in fresh]
                continue
            mine = [b for gi, b in self.buckets if gi == index]
            known = self._group_params[index]
            if len(params) == len(known) and all(a is b for a, b in zip(params, known)) and \
                    all(b.matches() for b in mine):
                continue
            self._group_params[index] = params
            fresh = self._make_buckets(index, group)
            for bucket in fresh:
                carry_window(mine, bucket)
            for bucket in mine:
                self.forecaster.detach(bucket)
            at = next((k for k, (gi, _) in enumerate(self.buckets) if gi == index), len(self.buckets))
            self.buckets = [(gi, b) for gi, b in self.buckets if gi != index]
            self.buckets[at:at] = [(index, b) for b in fresh]

    def take_new_groups(self) -> None:
        """Take in the param groups added to the optimizer since the engine last looked (``add_param_group`` on
        the forecasting optimizer or on the optimizer it wraps); a group it refuses (raising) is taken off the
        optimizer again before the error goes on, so that no group is stepped without being forecast."""
        if len(self.optimizer.param_groups) == len(self._group_params):
            return
        try:
            self.refresh()
        except Exception:
            del self.optimizer.param_groups[len(self._group_params)]   # the group refresh() stopped at
            raise

    def check_grads(self) -> None:
        """Sparse gradients cannot be forecast: raise a TypeError before the base step runs."""
        for _, bucket in self.buckets:
            for p in bucket.params:
                if p.grad is not None and p.grad.is_sparse:
                    raise TypeError("ForecastSGD/Forecast with a forecaster does not support sparse gradients; use "
                                    "forecaster=None (plain SGD) or dense gradients (e.g. nn.Embedding(sparse=False))")

    @torch.compiler.disable
    def after_step(self, found_inf: torch.Tensor | None = None) -> None:
        """Record and, on schedule, jump (call once at the end of every ``step()``). ``found_inf``: the flag
        ``torch.amp.GradScaler`` gave a fused base optimizer for this step (non-zero: the step was skipped and is
        not counted; held until it matters, module docstring), or None."""
        if is_no_op_step(self.optimizer):
            return
        if found_inf is None:
            self.settle()
            self._step_count += 1
        else:
            skipped = (found_inf.detach() > 0).to(torch.int64).sum()
            self._held_skips = skipped if self._held_skips is None else self._held_skips + skipped
            self._held_steps += 1
            t = self._step_count + self._held_steps  # this step's count if no held step was skipped
            if t % self.record_every and t % self.jump_every:
                return
            self.settle()
            if self._step_count != t:  # a held step was skipped: not a record or jump step after all
                return
        t = self._step_count
        if t % self.record_every == 0 or t % self.jump_every == 0:
            self.refresh()
        if t % self.record_every == 0:
            for _, bucket in self.buckets:
                bucket.record(t)
        if t % self.jump_every == 0:
            self._jump(t)

    def moving(self, group_index: int, bucket: Bucket) -> list[int]:
        """Indices (in ``bucket.params``) of the parameters this step updated: a gradient, requires_grad and a
        non-zero learning rate in their group. The others are left out of a jump and keep their values."""
        group = self.optimizer.param_groups[group_index]
        lr = group.get("lr", 1.0)
        if isinstance(lr, torch.Tensor):
            lr = float(lr)
        if lr == 0:
            return []
        return [i for i, p in enumerate(bucket.params) if p.requires_grad and p.grad is not None]

    def _jump(self, t: int) -> None:
        ready = [(gi, b, self.moving(gi, b)) for gi, b in self.buckets if b.full]
        if not any(idx for _, _, idx in ready):  # no window full, or nothing this step updated: no jump
            return
        for hook in list(self.jump_pre_hooks.values()):
            hook(self.optimizer, t)
        if self.guard is None:
            horizon = self.next_horizon()
            horizon = horizon if self._forecast_all(ready, t + horizon) else None
        else:
            horizon = self._guarded_forecast(ready, t)
        for _, bucket, _ in ready:
            bucket.clear()
        if horizon == 0:
            self.num_rejected_jumps += 1
            return
        if horizon is not None:
            self.num_jumps += 1
            self._adjust_momentum(ready, horizon)
            for hook in list(self.jump_post_hooks.values()):
                hook(self.optimizer, t)
            return
        self.num_skipped_jumps += 1
        if not self._warned_skip:
            warnings.warn(f"weightcast: the forecast at step {t} was not finite and was skipped; the parameters "
                          "were left as they were (counted in num_skipped_jumps; warned once)", RuntimeWarning,
                          stacklevel=4)
            self._warned_skip = True

    @torch.no_grad()
    def _forecast_all(self, ready: list[tuple[int, Bucket, list[int]]], target: int) -> bool:
        """Write the forecast of the moving parameters of every ready bucket, or of none if any value would be
        non-finite."""
        ready = [(gi, b, idx) for gi, b, idx in ready if idx]
        if not self.forecaster.forecasts_are_linear():
            outs = [self.forecaster.forecast(b, list(b.slot_steps), target) for _, b, _ in ready]
            picked = [[out[i] for i in idx] for out, (_, _, idx) in zip(outs, ready)]
            if not all(bool(torch.isfinite(v).all()) for values in picked for v in values):
                return False  # a forecaster of this path never serves DTensor shards (see _make_buckets)
            for (_, bucket, idx), values in zip(ready, picked):
                bucket.write(values, idx)
            return True
        plans = [(b, idx, self._coefficients(b, target)) for _, b, idx in ready]
        sharded = any(b.sharded for b, _, _ in plans)
        if len(plans) == 1 and not sharded:  # the op alone is all-or-nothing for one bucket
            return self._write(*plans[0], bucket_absmax=True)
        provable = all(ops.forecast_is_provably_finite(b.dtype, c, b.slot_absmax) for b, _, c in plans)
        if self._agree(provable, plans):
            for plan in plans:
                self._write(*plan, bucket_absmax=True)
            return True
        scratch, finite = [], True
        for bucket, idx, coeffs in plans:
            outs = [torch.empty(bucket.numels[i], dtype=bucket.dtype, device=bucket.device) for i in idx]
            finite = bool(ops.lincomb_forecast(outs, bucket.history, [bucket.offsets[i] for i in idx], coeffs, None))
            if not finite:
                break
            scratch.append(outs)
        if not self._agree(finite, plans):
            return False
        for (bucket, idx, _), outs in zip(plans, scratch):
            bucket.write(outs, idx)
        return True

    @staticmethod
    def _write(bucket: Bucket, idx: list[int], coeffs: torch.Tensor, bucket_absmax: bool) -> bool:
        """lincomb_forecast of the parameters ``idx`` of ``bucket`` into themselves (all or nothing)."""
        tensors = bucket.tensors()
        if len(idx) < len(tensors):
            tensors, offsets = [tensors[i] for i in idx], [bucket.offsets[i] for i in idx]
        else:
            offsets = bucket.offsets
        return ops.lincomb_forecast_trusted(tensors, bucket.history, offsets, coeffs,
                                            bucket.slot_absmax if bucket_absmax else None, bucket.dtype,
                                            bucket.contiguous)

    @staticmethod
    def _agree(flag: bool, plans) -> bool:
        """For DTensor (FSDP2) parameters, every rank holds a shard: a jump happens on all ranks or on none, so
        the local verdict is combined over the default process group (a minimum); otherwise ``flag`` itself."""
        sharded = [b for b, _, _ in plans if b.sharded]
        if not sharded:
            return flag
        verdict = torch.tensor([1 if flag else 0], dtype=torch.int32, device=sharded[0].device)
        torch.distributed.all_reduce(verdict, op=torch.distributed.ReduceOp.MIN)
        return bool(verdict.item())

    def _guarded_forecast(self, ready: list[tuple[int, Bucket, list[int]]], t: int) -> int | None:
        """Jump with the guard: shrink the horizon until the guard's loss does not rise; restore if none passes.

        Returns the horizon used, 0 when the guard rejected every try (parameters restored), None when a
        forecast was not finite (parameters restored). If ``loss_fn`` raises, the parameters are restored before
        the exception propagates.
        """
        guard = self.guard
        with torch.no_grad():
            backups = [None if exact_history(b) else [b.tensors()[i].clone() for i in idx] for _, b, idx in ready]
        horizon = self.next_horizon()
        try:
            before = self._guard_criteria(ready)
            for _ in range(guard.tries):
                if not self._forecast_all(ready, t + horizon):
                    self._restore(ready, backups)
                    return None
                if guard.accepts(before, self._guard_criteria(ready)):
                    return horizon
                unit = self.forecaster.horizon_unit(self.record_every)
                shorter = max(unit, int(horizon * guard.shrink) // unit * unit)
                if shorter == horizon:   # nothing shorter to try: the same forecast would be judged again
                    break
                horizon = shorter
        except BaseException:
            self._restore(ready, backups)
            raise
        self._restore(ready, backups)
        return 0

    def _guard_criteria(self, ready: list[tuple[int, Bucket, list[int]]]) -> tuple[float, ...]:
        """The guard's criteria; when torch.distributed is initialised, averaged over the default process group
        (on the device of the first bucket), so that every rank (each judging on its own batch) takes the same
        decision and DDP replicas stay identical."""
        criteria = self.guard.loss()
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return criteria
        total = torch.tensor(criteria, dtype=torch.float64, device=ready[0][1].device)
        dist.all_reduce(total)
        return tuple((total / dist.get_world_size()).tolist())

    @staticmethod
    def _restore(ready: list[tuple[int, Bucket, list[int]]], backups: list) -> None:
        """Put back the parameters of the jump step: the newest slot of the window (or the backup copies when the
        history is stored in another dtype or is not raw snapshots, e.g. latents)."""
        for (_, bucket, idx), backup in zip(ready, backups):
            if backup is None:
                bucket.restore_newest(idx)
            else:
                bucket.write(backup, idx)

    def _coefficients(self, bucket: Bucket, target: int) -> torch.Tensor:
        return self.forecaster.coefficients(bucket.slot_steps, target).to(torch.float64)

    def _adjust_momentum(self, ready: list[tuple[int, Bucket, list[int]]], horizon: int) -> None:
        """Apply ``after_jump`` to the momentum-like state (``MOMENTUM_KEYS``: SGD and RMSprop
        ``momentum_buffer``, Adam-family ``exp_avg``) of the jumped parameters; other state is left alone.

        keep: unchanged. reset: zeroed in place, as RMSprop and Adam initialise them (the tensors stay, so every
        base path, fused included, sees the state it expects); for SGD the next buffer is then
        ``(1 - dampening) * grad``, the gradient itself without dampening, as at the first step. scale: multiplied
        by ``beta ** horizon`` (beta = the group's ``momentum`` or ``betas[0]``, horizon the one the jump used):
        the decay the buffer would see over the steps the jump skipped, since the forecast has already spent the
        velocity that carried the trajectory there.
        """
        if self.after_jump == "keep":
            return
        state = self.optimizer.state
        for group_index, bucket, idx in ready:
            group = self.optimizer.param_groups[group_index]
            buffers = [s[key] for s in (state.get(bucket.params[i], {}) for i in idx)
                       for key in MOMENTUM_KEYS if isinstance(s.get(key), torch.Tensor)]
            if not buffers:
                continue
            if self.after_jump == "reset":
                torch._foreach_zero_(buffers)
            else:
                beta = group.get("momentum", group.get("betas", (0.0,))[0])
                torch._foreach_mul_(buffers, float(beta) ** horizon)

    def param_ids(self) -> dict[int, int]:
        """id(param) -> index in the optimizer's state_dict numbering (params in group order)."""
        ids, index = {}, 0
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                ids[id(p)] = index
                index += 1
        return ids

    def schedule(self) -> dict[str, Any]:
        return {"window": self.window, "record_every": self.record_every, "jump_every": self.jump_every,
                "horizon": self.horizon.spec(), "after_jump": self.after_jump}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly: counters, schedule, per-bucket history, forecaster state."""
        self.refresh()
        self.settle()
        ids = self.param_ids()
        return {
            "step": self.step_count, "num_jumps": self.num_jumps, "num_skipped_jumps": self.num_skipped_jumps,
            "num_rejected_jumps": self.num_rejected_jumps, "schedule": self.schedule(),
            "buckets": [dict(b.state_dict(), group=gi, params=[ids[id(p)] for p in b.params])
                        for gi, b in self.buckets],
            "forecaster": self.forecaster.state_dict(),
        }

    def check_state(self, state: dict[str, Any]) -> None:
        """Raise ValueError, naming the saved and this optimizer's side, unless :meth:`load_state_dict` can take
        ``state``; nothing is changed."""
        saved_name = state.get("forecaster", {}).get("name")
        if saved_name != self.forecaster.name:
            raise ValueError(f"saved with forecaster {saved_name!r}, this optimizer uses {self.forecaster.name!r}")
        mine = self.schedule()
        saved = dict(state["schedule"])
        if isinstance(saved.get("horizon"), int):  # saved before schedules were objects
            saved["horizon"] = {"kind": "constant", "steps": saved["horizon"]}
        if saved != mine:
            diff = {k: (saved.get(k), v) for k, v in mine.items() if saved.get(k) != v}
            raise ValueError("saved forecast schedule differs from this optimizer's: " +
                             ", ".join(f"{k} saved {a!r}, this optimizer {b!r}" for k, (a, b) in diff.items()))
        self.refresh()
        ids = self.param_ids()
        layout = [(gi, [ids[id(p)] for p in b.params]) for gi, b in self.buckets]
        saved = [(s["group"], list(s["params"])) for s in state["buckets"]]
        if layout != saved:
            raise ValueError("saved forecast history belongs to another parameter layout "
                             f"(saved buckets {saved}, this optimizer {layout})")
        for (_, bucket), bucket_state in zip(self.buckets, state["buckets"]):
            bucket.check_state(bucket_state)
        self.forecaster.check_state(state["forecaster"])

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (call :meth:`check_state` first: this one assumes it passed)."""
        for (_, bucket), bucket_state in zip(self.buckets, state["buckets"]):
            bucket.load_state_dict(bucket_state)
        self.forecaster.load_state_dict(state["forecaster"])
        self.step_count = int(state["step"])
        self.num_jumps = int(state["num_jumps"])
        self.num_skipped_jumps = int(state["num_skipped_jumps"])
        self.num_rejected_jumps = int(state.get("num_rejected_jumps", 0))

    def reset(self) -> None:
        """Start over: no step counted, every window empty (a checkpoint of a plain optimizer was loaded)."""
        self.step_count = 0
        for _, bucket in self.buckets:
            bucket.clear()
