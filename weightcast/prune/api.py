"""One interface for every pruner: ``prune(model, sparsity, method=..., data=None) -> masks``."""
from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping
from typing import Callable, Iterator

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from ..schedules import as_int
from .layers import eval_output, live_weight, masks_of, prunable_layers, weight_of

DATA_FREE = ("random", "magnitude", "lamp", "hypernet")
DATA_BASED = ("obs", "woodfisher", "chita")
METHODS = DATA_FREE + DATA_BASED
SCOPES = ("global", "layer")


def check_sparsity(sparsity: float) -> float:
    """``sparsity`` as a float; TypeError unless it is a real number (not a string), ValueError unless it is in
    [0, 1)."""
    if isinstance(sparsity, (str, bytes, bool)):
        raise TypeError(f"sparsity must be a float in [0, 1), got {type(sparsity).__name__} {sparsity!r}")
    try:
        s = float(sparsity)
    except (TypeError, ValueError):
        raise TypeError(f"sparsity must be a float in [0, 1), got {type(sparsity).__name__} {sparsity!r}") \
            from None
    if not 0.0 <= s < 1.0 or math.isnan(s):
        raise ValueError(f"sparsity must be in [0, 1) (the fraction of weights removed; 0.9 keeps 10%), got {s}")
    return s


def keep_top(scores: dict[str, torch.Tensor], sparsity: float, scope: str = "global",
             alive: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Bool masks keeping the highest scores: exactly ``round(sparsity * n)`` removed over all weights
    (``scope="global"``) or in every layer (``"layer"``); ties broken by position. ``alive`` (same keys, bool
    masks; default all True): the weights already pruned (False) stay pruned and count toward the removals
    (:func:`check_target`)."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    if alive is not None:
        check_target(alive, sparsity, scope)
        scores = {name: s.detach().float().masked_fill(~alive[name], -math.inf) for name, s in scores.items()}
    if scope == "layer":
        return {name: keep_top({name: s}, sparsity)[name] for name, s in scores.items()}
    flat = torch.cat([s.detach().flatten().float() for s in scores.values()])
    k = round(sparsity * flat.numel())
    keep = torch.ones(flat.numel(), dtype=torch.bool, device=flat.device)
    if k:
        keep[torch.topk(flat, k, largest=False, sorted=False).indices] = False
    out, start = {}, 0
    for name, s in scores.items():
        out[name] = keep[start:start + s.numel()].reshape(s.shape)
        start += s.numel()
    return out


def check_target(alive: dict[str, torch.Tensor], sparsity: float, scope: str = "global") -> None:
    """Raise ValueError when the weights already pruned (``alive`` False; ``"<layer>.weight"`` -> bool mask) are
    more than ``round(sparsity * n)`` over all layers (``scope="global"``) or in one layer (``"layer"``): pruned
    weights stay pruned, so ``sparsity`` cannot go below the model's."""
    groups = {"the model": list(alive.values())} if scope == "global" else {k: [v] for k, v in alive.items()}
    for where, masks in groups.items():
        n = sum(m.numel() for m in masks)
        pruned = sum(int((~m).sum()) for m in masks)
        if pruned > round(sparsity * n):
            raise ValueError(f"{where} already has {pruned} of its {n} weights pruned (sparsity {pruned / n:.4g}) "
                             f"by its masks, more than sparsity {sparsity} removes: sparsity is the total fraction "
                             "pruned, counting the weights pruned before (not a fraction of the remaining weights "
                             f"as torch.nn.utils.prune's amount), so ask for a sparsity of at least {pruned / n!r} "
                             f"({pruned} of {n})")


OPTIONS = {"random": ("generator",), "magnitude": (), "lamp": (), "hypernet": ("hypernet", "prior", "calibration"),
           "obs": ("allocation", "rel_damp", "state"), "woodfisher": ("stages", "rel_damp", "block_size"),
           "chita": ("stages", "rel_damp", "block_size", "max_iter", "tol")}
GLOBAL_ONLY = ("woodfisher", "chita")   # select over all layers at once: no scope="layer"


def prune(model: nn.Module, sparsity: float, method: str = "magnitude", data=None, *, scope: str = "global",
          apply: bool = True, update_weights: bool = True, **options) -> dict[str, torch.Tensor]:
    """Prune the weights of ``model``'s Linear/Conv layers one-shot; returns ``{"<layer>.weight": bool mask}``.

    sparsity: fraction of weights removed, in [0, 1); every method removes exactly ``round(sparsity * n)`` (n
    the prunable weights: all of them with ``scope="global"``, each layer's with ``scope="layer"``). On a model
    already pruned (masks of ``torch.nn.utils.prune``, e.g. an earlier ``prune``) ``sparsity`` is the total: the
    weights pruned before stay pruned and count toward it, the methods choose among the others (scoring the
    weights as the model uses them, pruned ones zero), and the returned masks are the masks the model has after;
    so ``prune(m, 0.5)`` then ``prune(m, 0.8)`` ends at 0.8 (torch's ``amount`` is instead a fraction of the
    remaining weights). A sparsity below the model's current one is refused (:func:`check_target`).
    method and its ``options`` (keywords; an option the method does not take is refused): ``"random"``
    (``generator``: a ``torch.Generator``); ``"magnitude"`` (|w|); ``"lamp"`` (LAMP scores,
    :func:`.scores.lamp_scores`, global top-k: magnitude within each layer, a data-free layer allocation in
    which every layer keeps its largest weight while at least one weight per layer is kept; with
    ``scope="layer"`` it is per-layer magnitude); ``"hypernet"`` (the mask hypernetwork,
    :mod:`weightcast.prune.hypernet`; weights only; ``hypernet``: a :class:`MaskHypernetwork`, default the
    shipped one; where it is calibrated, WoodFisher on samples of its input prior for the model's task,
    :meth:`MaskHypernetwork.prune` -- ``prior`` names the task, found from the model when omitted,
    ``calibration`` a :class:`.calibration.Calibration`, default the hypernetwork's own); ``"obs"`` (layer-wise
    OBS, :mod:`.obs`; ``allocation`` -- "relative" (default): the cheapest OBS steps over all layers, each layer's
    costs relative to its output energy, "global": the same with the raw costs, "magnitude": each layer loses
    what global magnitude would remove there, "uniform": every layer at ``sparsity``, which ``scope="layer"``
    selects -- ``rel_damp``, ``state``); ``"woodfisher"``
    and ``"chita"`` (:mod:`.fisher`; global only, in ``stages`` steps that recompute the gradients: ``stages``
    (default :data:`.fisher.DEFAULT_STAGES` of the method), ``rel_damp``, ``block_size`` -- None, the full
    Fisher, else blocks of that many weights within a layer -- and ``max_iter``/``tol`` for CHITA).
    :data:`OPTIONS` lists each method's options.
    scope: ``"global"`` or ``"layer"`` (every layer at ``sparsity``); WoodFisher and CHITA refuse ``"layer"``.
    data: the calibration batch ``(x, y)`` for the data-based methods (about 1,024 training examples: OBS reads x,
    WoodFisher and CHITA the per-sample gradients of the cross-entropy at labels y -- for a sequence model with
    outputs (B, T, classes), labels (B, T)); ignored by the others. The model must run on ``x`` as it is.
    apply: apply the masks with ``torch.nn.utils.prune.custom_from_mask`` (``weight_orig`` + ``weight_mask``).
    update_weights: write the compensated weights of OBS/WoodFisher/CHITA (and of a calibrated hypernet) into the
    model (into ``weight_orig`` with ``apply``, zeros where pruned: it is then not the dense original; keep a copy
    of the state_dict to rewind). Those methods refuse ``apply=False`` with ``update_weights=True``, as the masks
    alone do not carry the weights: pass ``update_weights=False`` for their masks (applied by hand they give plain
    masking), or take the (mask, weight) pairs from :func:`.obs.obs_prune` / :func:`.fisher.prune_in_stages` and
    apply them with :func:`apply_masks` (masks, weights from :func:`masks_and_weights`).
    Raises TypeError for a sparsity that is not a number (a string) and for an option the method does not take;
    ValueError for a sparsity outside [0, 1) or below the model's current one, an unknown method or scope, a scope
    the method does not honour, a data-based method without data or with calibration inputs the model does not
    run on or labels outside its classes, or ``apply=False`` with ``update_weights`` for a method that
    compensates; the model is left untouched then.
    """
    sparsity = check_sparsity(sparsity)
    if method not in METHODS:
        raise ValueError(f"unknown pruning method {method!r}; choose one of {METHODS}")
    _check_options(method, scope, apply, update_weights, options)
    if method in DATA_BASED:
        x, y = _calibration(method, data)
        _check_fits(model, x)
    layers = prunable_layers(model)
    alive = masks_of(model)
    check_target(alive, sparsity, scope)
    weights: dict[str, torch.Tensor] = {}
    if method == "random":
        generator = options.get("generator")
        masks = keep_top({f"{n}.weight": torch.rand(weight_of(m).shape, generator=generator).to(weight_of(m).device)
                          for n, m in layers.items()}, sparsity, scope, alive)
    elif method == "magnitude":
        masks = keep_top({f"{n}.weight": live_weight(m).abs() for n, m in layers.items()}, sparsity, scope, alive)
    elif method == "lamp":
        from .scores import lamp_scores

        masks = keep_top(dict(zip(alive, lamp_scores([live_weight(m) for m in layers.values()]))), sparsity, scope,
                         alive)
    elif method == "hypernet":
        from .hypernet import load_default

        net = options.pop("hypernet", None) or load_default()
        if not apply and update_weights and net.calibration_prior(model, sparsity, scope, options.get("prior")):
            raise ValueError(_LOSES_WEIGHTS.format(method=method))   # it would compensate like WoodFisher
        masks, weights = net.prune(model, sparsity, scope, **options)
    else:
        if method == "obs" and scope == "layer":
            options = {**options, "allocation": "uniform"}
        masks, weights = _data_based(method, model, sparsity, x, y, options)
    _warn_emptied_layers(masks, method, sparsity)
    if apply:
        apply_masks(model, masks, weights if update_weights else None)
    return masks


def _check_options(method: str, scope: str, apply: bool, update_weights: bool, options: dict) -> None:
    """Refuse what ``method`` does not take or honour (see :func:`prune`)."""
    unknown = sorted(set(options) - set(OPTIONS[method]))
    if unknown:
        own = f"its own options are {list(OPTIONS[method])}" if OPTIONS[method] else "it has no options of its own"
        raise TypeError(f"method {method!r} does not take {unknown}: {own}, besides prune's scope, apply and "
                        "update_weights")
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    if scope == "layer" and method in GLOBAL_ONLY:
        raise ValueError(f"method {method!r} selects over all layers at once and has no scope='layer'; for the "
                         "same sparsity in every layer use obs, lamp or magnitude with scope='layer'")
    if scope == "layer" and options.get("allocation", "uniform") != "uniform":
        raise ValueError(f"scope='layer' is obs's allocation='uniform', not allocation={options['allocation']!r}; "
                         "pass one of them")
    if not apply and update_weights and method in DATA_BASED:
        raise ValueError(_LOSES_WEIGHTS.format(method=method))


_LOSES_WEIGHTS = ("method {method!r} compensates the remaining weights, which apply=False would lose (the masks alone "
                  "do not carry them): pass update_weights=False for its masks only, or apply=True; "
                  "weightcast.prune.obs.obs_prune / weightcast.prune.fisher.prune_in_stages return the (mask, weight) "
                  "pairs, for apply_masks(model, masks, weights)")


def _warn_emptied_layers(masks: dict[str, torch.Tensor], method: str, sparsity: float) -> None:
    """Warn (UserWarning) when a mask keeps no weight of a layer: a global selection may empty a whole layer (layer
    collapse; e.g. CHITA on the prune zoo's LeNet-5 on digits at s = 0.9 empties its second convolution), and a
    feed-forward network's output then no longer depends on its input."""
    emptied = [name for name, mask in masks.items() if not bool(mask.any())]
    if emptied:
        warnings.warn(f"pruning by {method} at sparsity {sparsity} kept no weight of {emptied}: the layer passes on "
                      "only its bias (in a feed-forward network the output then no longer depends on the input); "
                      "use scope='layer', a lower sparsity or another method", stacklevel=3)


def _calibration(method: str, data) -> tuple[torch.Tensor, torch.Tensor | None]:
    if data is None:
        raise ValueError(f"method {method!r} needs calibration data: pass data=(x, y), a batch of about 1,024 "
                         "training examples (e.g. task.eval_tensors('train', 1024)); the data-free methods are "
                         f"{DATA_FREE}")
    if isinstance(data, torch.Tensor):
        data = (data, None)
    x, y = data
    if method != "obs" and y is None:
        raise ValueError(f"method {method!r} needs labels: pass data=(x, y)")
    if len(x) == 0:
        raise ValueError("the calibration batch is empty")
    if y is not None and len(y) != len(x):
        raise ValueError(f"the calibration batch has {len(x)} inputs but {len(y)} labels: pass one label per "
                         "input, data=(x, y)")
    return x, y


def _check_fits(model: nn.Module, x: torch.Tensor) -> None:
    """Raise ValueError, saying why, when ``model`` does not run on the calibration inputs ``x`` (tried on the first
    two, in eval mode without gradients; its mode is restored). The labels are checked by the pruner that reads
    them (:func:`.fisher.check_labels`)."""
    try:
        eval_output(model, x[:2])
    except Exception as exc:  # noqa: BLE001 -- any failure here means the batch does not fit the model
        raise ValueError(f"the model does not run on the calibration inputs x of shape {tuple(x.shape)} and dtype "
                         f"{x.dtype} ({type(exc).__name__}: {exc}); pass inputs of the task it was trained on, as "
                         "its parameters' dtype and device") from None


def _data_based(method, model, sparsity, x, y, kwargs) -> tuple[dict, dict]:
    if method == "obs":
        from .obs import obs_prune

        result = obs_prune(model, sparsity, x, **kwargs)
    else:
        from .fisher import prune_in_stages

        result = prune_in_stages(model, sparsity, x, y, method, **kwargs)
    return masks_and_weights(result)


def masks_and_weights(result: dict[str, tuple[torch.Tensor, torch.Tensor]]
                      ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The ``{name: (mask, weight)}`` of the data-based pruners (OBS, WoodFisher, CHITA) as ``(masks, weights)``,
    the arguments of :func:`apply_masks`."""
    return {k: m for k, (m, _) in result.items()}, {k: w for k, (_, w) in result.items()}


def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor], weights: dict[str, torch.Tensor] | None = None
                ) -> nn.Module:
    """Apply ``masks`` (``"<layer>.weight"`` -> bool) with ``torch.nn.utils.prune.custom_from_mask``; first
    write ``weights`` (same keys) into the layers when given. Returns the model."""
    layers = prunable_layers(model)
    for key, mask in masks.items():
        name = key.removesuffix(".weight")
        if name not in layers:
            raise KeyError(f"no prunable layer {name!r} in the model; its layers are {list(layers)}")
        layer = layers[name]
        if weights is not None and key in weights:
            with torch.no_grad():
                weight_of(layer).copy_(weights[key].to(weight_of(layer).dtype))
        torch_prune.custom_from_mask(layer, "weight", mask.to(weight_of(layer).device))
    return model


def sparsity_of(model: nn.Module) -> float:
    """The fraction of zero weights over the model's prunable layers (masked or not)."""
    zeros = total = 0
    for layer in prunable_layers(model).values():
        zeros += int((layer.weight == 0).sum())
        total += layer.weight.numel()
    return zeros / total


def pruning_hooks(module: nn.Module, name: str | None = None) -> dict[int, torch_prune.BasePruningMethod]:
    """``module``'s ``torch.nn.utils.prune`` forward pre-hooks (hook id -> hook), each parametrising one tensor
    (``hook._tensor_name``: ``weight``, also ``bias`` or any other a user pruned with torch); only ``name``'s
    when given."""
    return {key: hook for key, hook in module._forward_pre_hooks.items()
            if isinstance(hook, torch_prune.BasePruningMethod) and name in (None, hook._tensor_name)}


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold every mask into its tensor (``torch.nn.utils.prune.remove``): a plain model with zeros. Every module's
    and every pruned tensor's, not only the prunable layers' weights (a checkpoint may carry a mask of a layer now
    left out, e.g. an attention's ``out_proj``, or of a bias pruned with torch)."""
    for module in model.modules():
        for hook in list(pruning_hooks(module).values()):
            torch_prune.remove(module, hook._tensor_name)
    return model


def load_pruned(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """Load a pruned model's ``state_dict`` (``<module>.<tensor>_orig`` / ``<tensor>_mask`` pairs, as
    ``torch.nn.utils.prune`` writes them, of weights or any other tensor) into a model of the same architecture:
    the masks are applied first, so they keep working after loading, and the masked tensors are recomputed from
    the loaded values. A mask naming no tensor of the model raises KeyError, a mask of another shape than its
    tensor RuntimeError, both before the model is touched; when ``model.load_state_dict`` then fails (as it
    would on the same model unpruned), the masks applied here are taken off again before its error propagates.
    A ``state_dict`` that is not a mapping (a file name) raises TypeError."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of tensor names to tensors, got {type(state_dict).__name__}; "
                        "read a saved one first: load_pruned(model, torch.load(FILE))")
    modules = dict(model.named_modules())
    own = model.state_dict()
    masks = {}   # (module path, tensor name) -> mask
    for key, mask in state_dict.items():
        if key.endswith("_mask") and key not in own:
            path, _, attr = key.rpartition(".")
            name = attr.removesuffix("_mask")
            target = getattr(modules.get(path), name, None)
            if not isinstance(target, torch.Tensor):
                raise KeyError(f"the state_dict has a mask for {name!r} of {path!r}, a module with a tensor that "
                               "this model lacks: load it into a model of the same architecture")
            if tuple(mask.shape) != tuple(target.shape):
                raise RuntimeError(f"{key}: {tuple(mask.shape)} in the state_dict, {tuple(target.shape)} in the "
                                   "model; nothing was loaded: load it into a model of the same architecture")
            masks[(path, name)] = mask
    applied = []
    try:
        for (path, name), mask in masks.items():
            module = modules[path]
            torch_prune.custom_from_mask(module, name, mask.bool().to(getattr(module, name).device))
            applied.append((module, name))
        model.load_state_dict(state_dict)
    except BaseException:
        for module, name in reversed(applied):
            _take_off_mask(module, name)
        raise
    for module, name in applied:   # the masked tensor was computed from the fresh values: recompute it
        for hook in pruning_hooks(module, name).values():
            hook(module, None)
    return model


def _take_off_mask(module: nn.Module, name: str) -> None:
    """Undo ``custom_from_mask(module, name, ...)`` on a tensor pruned once, leaving the tensor as it was
    (``torch.nn.utils.prune.remove`` would fold the mask into it)."""
    for key in pruning_hooks(module, name):
        del module._forward_pre_hooks[key]
    original = module._parameters.pop(f"{name}_orig")
    del module._buffers[f"{name}_mask"]
    delattr(module, name)
    module.register_parameter(name, original)


def recalibrate_bn(model: nn.Module, batches, steps: int | None = None) -> bool:
    """Re-estimate BatchNorm running statistics after pruning (``torch.optim.swa_utils.update_bn``). ``batches``:
    inputs or (input, target) pairs -- a list or DataLoader is read whole; from an iterator (a generator too),
    which may never end (``task.batches(...)`` does not), the first ``steps`` batches (``steps`` also caps the
    others). Returns False when the model has no BatchNorm (nothing to do, nothing read). Raises ValueError for an
    iterator without ``steps``."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return False
    if steps is not None:
        batches = itertools.islice(batches, as_int("steps", steps, 1))
    elif isinstance(batches, Iterator):
        raise ValueError("batches is an iterator, which may never end (task.batches(...) does not): pass steps=N, "
                         "the number of batches to read from it, or a list or DataLoader")
    torch.optim.swa_utils.update_bn(batches, model)
    return True


def finetune(model: nn.Module, batches, steps: int, lr: float = 1e-3,
             loss_fn: Callable | None = None) -> nn.Module:
    """``steps`` steps of Adam on the masked model (the masks stay: pruned weights get zero gradient through
    ``weight_orig * weight_mask``). ``batches``: an iterable of (x, y) with at least ``steps`` batches (a list,
    a DataLoader or an endless iterator such as ``task.batches(...)``). Returns the model in eval mode, also when
    it raises: ValueError when ``batches`` runs out first (the steps taken are kept)."""
    steps = as_int("steps", steps, 1)
    loss_fn = loss_fn or nn.functional.cross_entropy
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    batches = iter(batches)
    model.train()
    try:
        for step in range(steps):
            batch = next(batches, None)
            if batch is None:
                raise ValueError(f"batches ran out after {step} of {steps} steps: pass at least steps batches, or "
                                 "an endless iterator such as task.batches(...)")
            x, y = batch
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
    finally:
        model.eval()
    return model
