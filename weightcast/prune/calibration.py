"""How the mask hypernetwork runs WoodFisher on an input prior's samples where it is calibrated: the setting its
gate is chosen with and saved with (:mod:`.hypernet`)."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields

from ..errors import check_positive_int


@dataclass(frozen=True)
class Calibration:
    """How :meth:`.hypernet.MaskHypernetwork.prune` runs WoodFisher (:func:`.fisher.prune_in_stages`) on an input
    prior's samples: ``samples`` labelled inputs drawn from the prior (the Fisher is estimated from them), Fisher
    blocks of ``block_size`` weights (None: the full Fisher), ``stages`` steps, damping ``rel_damp``; ``draws``
    draws of the samples (seeds 0 .. draws-1), keeping the one whose pruned model has the lowest cross-entropy on
    another draw (seed ``draws``). The default samples were chosen on the prune zoo's validation MLPs and the blocks
    on all its validation runs, MLPs, LeNet-5s and the digits MLP, at s = 0.9
    (benchmarks/results/prune/prune_tune_fisher.md, inputs "prior"); stages and damping are WoodFisher's
    defaults; one draw did as well as the best of three on the validation MLPs (weightcast/prune/README.md).
    Raises ValueError for ``samples``, ``draws`` or ``stages`` that are not positive integers, a ``block_size``
    that is neither one nor None, or a ``rel_damp`` that is not a finite positive number."""

    samples: int = 8192
    block_size: int | None = 2048
    draws: int = 1
    stages: int = 8
    rel_damp: float = 1e-3

    def __post_init__(self):
        for name in ("samples", "draws", "stages"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("block_size", self.block_size, allow_none=True)
        damp = self.rel_damp
        if isinstance(damp, bool) or not isinstance(damp, (int, float)) or not math.isfinite(damp) or damp <= 0:
            raise ValueError(f"rel_damp must be a finite positive number, got {damp!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Calibration":
        """The setting :meth:`to_json` wrote. Raises ValueError for text that is not a JSON object with exactly
        the fields of :class:`Calibration`, or for bad values."""
        data = json.loads(text)   # json.JSONDecodeError is a ValueError
        names = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or set(data) != names:
            raise ValueError(f"a calibration setting has exactly the fields {sorted(names)}, got {text!r}")
        return cls(**data)


# the setting of files saved before the setting was: their gate was chosen with it
UNRECORDED_CALIBRATION = Calibration(samples=1024, block_size=None, draws=3, stages=8, rel_damp=1e-3)
