"""Datasets (implementations: :mod:`ncsn_core.data`). Each declares its per-sample shape from
its parameters, so `levels = auto` (Technique 2) and parameter counts need no data on disk."""

from __future__ import annotations

from typing import Any

from ncsn_core.params import Bool, Choice, DataFacts, Float, Int, ListOf, Param, Str, declare

_IMPL = "ncsn_core.data:"
_FLIP = Param("flip", Bool(), False, "random horizontal flips during training")
_DEQ = Param("dequantize", Choice(("none", "uniform")), "uniform", "uniform dequantisation x·255/256 + U/256")
# Sizes that allocate memory are bounded here, so `repro check` refuses 10 ** 11 with the
# number and its position instead of a run failing on an 800 GB allocation.
MAX_IMAGE_SIZE = 2048  # pixels per side (FFHQ is 1024; NCSNv2 trains at most 256)
MAX_POINTS = 10_000_000  # toy training points (2 float32 each: 80 MB)
_SIZE28 = Param("image_size", Int(min=4, max=MAX_IMAGE_SIZE), 28, "resize to this size")
_ROOT_DOC = "dataset folder; downloaded there when missing and download = true"
_LIMIT = Param("limit", Int(min=0), 0, "use only the first N training images (0 = all)")
# The scene categories of LSUN's official export (each has <category>_train_lmdb and _val_lmdb).
LSUN_CATEGORIES = (
    "bedroom",
    "bridge",
    "church_outdoor",
    "classroom",
    "conference_room",
    "dining_room",
    "kitchen",
    "living_room",
    "restaurant",
    "tower",
)
_DOWNLOAD = Param("download", Bool(), True, "download with torchvision when the files are not in root")


_FLIP_ON = Param("flip", Bool(), True, "random horizontal flips")


def _downloadable(name: str) -> list[Param]:
    """`root` (where the files are, or go) and `download` of a torchvision-downloadable dataset."""
    return [Param("root", Str(), f"data/{name}", _ROOT_DOC), _DOWNLOAD]


def _square(channels: int) -> Any:
    return lambda p: (channels, p["image_size"], p["image_size"])


# One parameter per line: the declarations read as a table.
# fmt: off
DECLARATIONS = (
    declare("data", "mixture2d", _IMPL + "mixture2d",
        params=[
            Param("weights", ListOf(Float(min=0.0), min_len=1), (0.2, 0.8), "mixture weights (normalised)"),
            Param("means", ListOf(Float()), (-5.0, -5.0, 5.0, 5.0), "component means, flattened (x₁, y₁, x₂, y₂, ...)"),
            Param("std", Float(min=0.0, exclusive_min=True), 1.0, "isotropic standard deviation of every component"),
            Param("stds", ListOf(Float(min=0.0, exclusive_min=True)), (), "per-component per-axis stds, flattened; overrides std"),
            Param("n_train", Int(min=1, max=MAX_POINTS), 100_000, "size of the fixed training set drawn from the mixture"),
            Param("seed", Int(min=0), 0, "seed of the training-set draw"),
            Param("perturbed", Choice(("convolution", "component_std")), "convolution", "the exact score at level σ: convolution, q_σ = p * N(0, σ²I) (components N(μ_k, s_k² + σ²)); component_std, σ replaces the components' std (N(μ_k, σ²I)), as the official toy runner (models/gmm.py GMMDistAnneal)"),
        ],
        doc="NCSN's 2-D toy mixture 1/5 N((-5,-5), I) + 4/5 N((5,5), I) (§3.2), or any 2-D Gaussian mixture",
        facts=DataFacts(lambda p: (2,), modality="points", density=True),
    ),
    declare("data", "digits", _IMPL + "digits",
        params=[_FLIP, _DEQ],
        doc="scikit-learn's 8×8 handwritten digits (1797 images, shipped with the package): the embedded default",
        facts=DataFacts(lambda p: (1, 8, 8), labels=True),
    ),
    declare("data", "fashion_mnist", _IMPL + "fashion_mnist",
        params=[
            Param("root", Str(), "/usr/share/datasets/fashion-mnist", "folder with the IDX files (Debian's dataset-fashion-mnist)"),
            _FLIP,
            _DEQ,
            _SIZE28,
        ],
        doc="Fashion-MNIST read from local IDX files (28×28, 60k train / 10k test)",
        facts=DataFacts(_square(1), labels=True),
    ),
    declare("data", "mnist", _IMPL + "mnist",
        params=[*_downloadable("mnist"), _FLIP, _DEQ, _SIZE28],
        doc="MNIST (torchvision's MNIST/raw/ IDX files under root, read directly; or downloaded)",
        facts=DataFacts(_square(1), labels=True),
    ),
    declare("data", "cifar10", _IMPL + "cifar10",
        params=[*_downloadable("cifar10"), _FLIP_ON, _DEQ,
            Param("image_size", Int(min=4, max=MAX_IMAGE_SIZE), 32, "resize to this size (32: as stored, no resizing)"),
        ],
        doc="CIFAR-10 32×32 (cifar-10-batches-py/ under root, read directly; or downloaded by torchvision)",
        facts=DataFacts(_square(3), labels=True),
    ),
    declare("data", "celeba", _IMPL + "celeba",
        params=[*_downloadable("celeba"), _FLIP_ON, _DEQ,
            Param("image_size", Int(min=4, max=MAX_IMAGE_SIZE), 32, "center-crop 140, then resize to this (NCSN: 32; NCSNv2: 64)"),
            Param("limit", Int(min=0), 0, "use only the first N training images (0 = all)"),
        ],
        doc="CelebA, center-cropped to 140×140 and resized (NCSN §5); local files or a torchvision download",
        facts=DataFacts(_square(3)),
    ),
    declare("data", "lsun", _IMPL + "lsun",
        params=[
            Param("root", Str(), "data/lsun", "folder holding the official LMDB export CATEGORY_train_lmdb/ (and CATEGORY_val_lmdb/)"),
            Param("category", Choice(LSUN_CATEGORIES), "church_outdoor", "LSUN scene category"),
            Param("image_size", Int(min=4, max=MAX_IMAGE_SIZE), 96, "shorter side resized to this, then center-cropped (NCSNv2: church 96, bedroom/tower 128)"),
            Param("flip", Bool(), True, "random horizontal flips"),
            _DEQ,
            _LIMIT,
        ],
        doc=(
            "LSUN from its official LMDB export (needs the lmdb package), Resize + CenterCrop as NCSNv2; "
            "CATEGORY_val_lmdb is the test split when present"
        ),
        facts=DataFacts(_square(3)),
    ),
    declare("data", "images", _IMPL + "images",
        params=[
            Param("path", Str(), "data/ffhq/images1024x1024", "a folder of .png/.jpg/.jpeg/.webp files (searched recursively) or a .zip of them"),
            Param("image_size", Int(min=4, max=MAX_IMAGE_SIZE), 256, "shorter side resized to this, then center-cropped (NCSNv2 FFHQ: 256)"),
            Param("flip", Bool(), True, "random horizontal flips"),
            _DEQ,
            _LIMIT,
            Param("test_fraction", Float(min=0.0, max=0.9), 0.1, "the last fraction of the files, by name, is the test split (0: none)"),
        ],
        doc=(
            "any image set (FFHQ: images1024x1024/ → 256) from a folder or zip, sorted by name, "
            "RGB, Resize + CenterCrop"
        ),
        facts=DataFacts(_square(3)),
    ),
)
# fmt: on

# Names a reader may reach for that are not datasets of their own: `data <alias>` is refused
# with how that dataset is read here (ncsn_core.registry's unknown-name message).
ALIASES: dict[str, str] = {
    "ffhq": 'read FFHQ with `data images { path = "data/ffhq/images1024x1024", image_size = 256 }`',
    "afhq": 'read AFHQ with `data images { path = "…" }`',
    "imagenet": 'read an image folder with `data images { path = "…" }`',
    "celeba_hq": 'read CelebA-HQ with `data images { path = "…" }`',
    "celebahq": 'read CelebA-HQ with `data images { path = "…" }`',
    "fashion": "Fashion-MNIST is `data fashion_mnist { }`",
    "fashionmnist": "Fashion-MNIST is `data fashion_mnist { }`",
    "cifar": "CIFAR-10 is `data cifar10 { }`",
    "cifar_10": "CIFAR-10 is `data cifar10 { }`",
    "toy": "the toy 2-D mixture is `data mixture2d { }`",
    "gmm": "the toy 2-D mixture is `data mixture2d { }`",
    "sklearn_digits": "scikit-learn's digits are `data digits { }`",
    **{
        f"lsun_{c}": f"read LSUN {c} with `data lsun {{ category = {c} }}`"
        for c in LSUN_CATEGORIES
        if c != "church_outdoor"
    },
    "lsun_church": "read LSUN church with `data lsun { category = church_outdoor }`",
    "lsun_church_outdoor": "read LSUN church with `data lsun { category = church_outdoor }`",
    "church": "read LSUN church with `data lsun { category = church_outdoor }`",
    "church_outdoor": "read LSUN church with `data lsun { category = church_outdoor }`",
    "bedroom": "read LSUN bedroom with `data lsun { category = bedroom }`",
    "tower": "read LSUN tower with `data lsun { category = tower }`",
}
