"""Training options, declared once: a typed, frozen dataclass per concern whose fields default to
None ("not given": the preset's or the built-in value applies). ``wardrobe.train``, ``cv``,
``compare``, the CLI (which only maps its flags onto them) and config.json all use these.

``FitOptions`` and ``AugmentOptions`` are derived from ``FitConfig`` and ``Augment`` field by field,
so a new training option is declared in one place."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, make_dataclass, replace

from wardrobe.data import DataOptions
from wardrobe.training.config import FitConfig
from wardrobe.training.knobs import Augment


def _all_none(name: str, source: type, skip: tuple[str, ...] = ()) -> type:
    return make_dataclass(name, [(f.name, f"{f.type} | None", field(default=None))
                                 for f in fields(source) if f.name not in skip], frozen=True)


# Every FitConfig field but those TrainOptions holds itself (mode, model, batch size, workers, seed)
# or the augmentation, which has its own concern.
FitOptions = _all_none("FitOptions", FitConfig,
                       skip=("mode", "model", "weights", "batch_size", "workers", "seed", "augment"))
AugmentOptions = _all_none("AugmentOptions", Augment)


@dataclass(frozen=True)
class SplitOptions:
    val_ratio: float | None = None  # None: 0.15
    test_ratio: float | None = None  # None: 0
    seed: int | None = None  # None: 0


@dataclass(frozen=True)
class ProbeOptions:
    head: str | None = None  # None: sqrt_linear
    cs: tuple[float, ...] | None = None  # None: the built-in grid
    use_cache: bool | None = None  # None: True
    levels: int | None = None  # None: the last 3 block stages where the network supports it, else 0


@dataclass(frozen=True)
class TrainOptions:
    mode: str | None = None  # probe (None), finetune or scratch
    preset: str | None = None  # fast or best
    model: str | None = None
    weights: str | None = None  # a weights file or hub-style folder for the model (probe, finetune)
    batch_size: int | None = None
    workers: int | None = None
    runtime: str | None = None  # None: auto
    augment: str | None = None  # an augmentation preset; knobs in ``augment_knobs``
    data: DataOptions = field(default_factory=DataOptions)
    split: SplitOptions = field(default_factory=SplitOptions)
    probe: ProbeOptions = field(default_factory=ProbeOptions)
    fit: FitOptions = field(default_factory=FitOptions)  # type: ignore[valid-type]
    augment_knobs: AugmentOptions = field(default_factory=AugmentOptions)  # type: ignore[valid-type]

    @classmethod
    def build(cls, base: TrainOptions | None = None, **flat) -> TrainOptions:
        """``base`` (never changed) with flat keyword options laid over it, each sorted into its
        concern by name; ``data_options`` replaces the data concern. TypeError names an unknown one."""
        opts = base or cls()
        flat = {k: v for k, v in flat.items() if v is not None}
        if "data_options" in flat:
            opts = replace(opts, data=flat.pop("data_options"))
        groups = {name: {} for name in ("top", "data", "split", "probe", "fit", "augment_knobs")}
        owners = [("top", {f.name for f in fields(cls)} - {"data", "split", "probe", "fit", "augment_knobs"}),
                  ("data", set(DataOptions.__dataclass_fields__)), ("split", set(SplitOptions.__dataclass_fields__)),
                  ("probe", set(ProbeOptions.__dataclass_fields__)), ("fit", {f.name for f in fields(FitOptions)}),
                  ("augment_knobs", {f.name for f in fields(AugmentOptions)})]
        for k, v in flat.items():
            owner = next((g for g, names in owners if k in names), None)
            if owner is None:
                raise TypeError(f"unknown option {k!r}")
            groups[owner][k] = v
        if isinstance(groups["top"].get("augment"), Augment):  # a whole Augment: its knobs, over no preset
            aug = groups["top"].pop("augment")
            groups["augment_knobs"] = {**asdict(aug), **groups["augment_knobs"]}
            groups["top"]["augment"] = "none"
        return replace(opts, **groups["top"],
                       **{g: replace(getattr(opts, g), **groups[g]) for g in groups if g != "top" and groups[g]})

    def knobs(self) -> dict:
        """The augmentation knobs that were given."""
        return {k: v for k, v in asdict(self.augment_knobs).items() if v is not None}

    def fit_overrides(self) -> dict:
        return {k: v for k, v in asdict(self.fit).items() if v is not None}

    def to_dict(self) -> dict:
        """What was given, for config.json (None: not given)."""
        return asdict(self)
