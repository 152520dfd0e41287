"""The augmentation knobs and their presets (no torch here: the command line reads them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from wardrobe.errors import WardrobeError


def flag(default, help: str, panel: str = "Augmentation (finetune / scratch)"):
    """A dataclass field that is also a command-line flag: ``--name`` with this help text."""
    return field(default=default, metadata={"help": help, "panel": panel})


@dataclass(frozen=True)
class Augment:
    hflip: float = flag(0.0, "Horizontal flip probability.")
    rotation: float = flag(0.0, "Max rotation in degrees.")  # uniform in [-r, r]
    crop_scale: float = flag(1.0, "Random-resized-crop minimum area (1 = no crop).")
    color_jitter: float = flag(0.0, "Brightness/contrast/saturation strength (hue a quarter of it).")
    randaugment_n: int = 0  # --randaugment N,M
    randaugment_m: int = 9
    erasing: float = flag(0.0, "Random erasing probability.")
    noise: float = flag(0.0, "Gaussian noise sigma on [0,1] pixels.")
    degrade: float = flag(0.0, "Share of training photos given one random degradation: Gaussian noise "
                               "(sigma up to 0.15), blur or JPEG recompression (quality 15-60).")
    mix: float = flag(0.0, "Share of training batches mixed, half by MixUp and half by CutMix.")

    def to_dict(self) -> dict:
        return asdict(self)


AUGMENT_PRESETS = {
    "none": Augment(),
    "light": Augment(hflip=0.5, crop_scale=0.6),
    "standard": Augment(hflip=0.5, crop_scale=0.35, color_jitter=0.2),
    "strong": Augment(hflip=0.5, crop_scale=0.25, color_jitter=0.3, randaugment_n=2, randaugment_m=9, erasing=0.25),
}


def resolve_augment(preset: str = "standard", **knobs) -> Augment:
    if preset not in AUGMENT_PRESETS:
        raise WardrobeError(f"--augment {preset}: unknown preset (use {', '.join(AUGMENT_PRESETS)})")
    names = {f.name for f in fields(Augment)}
    unknown = set(knobs) - names
    if unknown:
        raise TypeError(f"unknown augmentation knob(s): {sorted(unknown)}")
    aug = replace(AUGMENT_PRESETS[preset], **{k: v for k, v in knobs.items() if v is not None})
    if not 0 < aug.crop_scale <= 1:
        raise WardrobeError(f"--crop-scale {aug.crop_scale}: must be in (0, 1]")
    for name in ("hflip", "erasing", "degrade", "mix"):
        if not 0 <= getattr(aug, name) <= 1:
            raise WardrobeError(f"--{name} {getattr(aug, name)}: a probability must be in [0, 1]")
    return aug
