"""The one schema of the language: every block kind an experiment can hold.

Each :class:`BlockKind` says what the block is called, which registry kind it names
(``data digits { }`` names a ``data`` component; ``train { }`` is a fixed block with its own
fields), whether it holds repeated child blocks (``sample`` holds ``stage NAME { }``), which
other blocks it needs, and which run stage's hash covers it. The resolver, the checker, the
lowering to :class:`~ncsn_core.spec.RunSpec`, ``repro explain``, ``repro compile``'s output,
the generated docs and the CLI all read this table: adding a block kind is one entry here plus
its field in the run spec.
"""

from __future__ import annotations

import attrs

from ncsn_core.params import Bool, Choice, ComponentOf, Either, Float, Int, ListOf, Param, Str
from ncsn_core.values import Call

# The run's stages, in order; each stage's hash covers its blocks and the previous stage's hash.
# `select` (checkpoint selection) is optional: without a select block it is in no hash, and the
# sample stage's hash is what it was before the stage existed. `interpolate` (NCSNv2's
# interpolation figure) is optional the same way; its hash covers the train stage's and its block.
STAGES = ("train", "select", "sample", "evaluate", "interpolate")


@attrs.frozen
class BlockKind:
    name: str
    doc: str
    holds: str | None = None  # the registry kind named by the block (`data digits { }`); None: fixed fields
    fields: tuple[Param, ...] = ()  # a fixed block's parameters
    child: str | None = None  # the registry kind of repeated `<child> NAME { }` blocks inside it
    child_field: str = ""  # the run spec's field holding the children, in order
    required: bool = False
    needs: tuple[str, ...] = ()  # blocks that must be present when this one is
    # Lowered exactly when that block is present (with its defaults if not written): `train`
    # without a `network` has nothing to train and is left out of the run spec.
    default_with: str | None = None
    stage: str = "train"  # the run stage whose hash covers it ("" for none: where, not what)
    # An optional stage's block: when absent it is left out of every hash and of spec.json
    # (adding the block kind changed no existing hash).
    omit_when_absent: bool = False
    # False: the run spec keeps only the fields the file states (the launcher's others come from
    # the command line or the user's config, not from defaults frozen into the spec).
    fill_defaults: bool = True
    example: str = ""  # a component name for messages (`data digits { ... }`)


# ----------------------------------------------------------------------------- speed settings
# How fast a stage is computed, not what it computes: the same experiment computed faster is the
# same experiment, so these fields are in no hash (RunSpec leaves them out of every stage's part;
# docs/performance.md). "auto" picks the fast path on CUDA and the reference path (the official
# code's fp32 eager arithmetic, bit-identical to earlier versions) on the CPU.
_SWITCH = Choice(("auto", "on", "off"))
TRAIN_SPEED: tuple[Param, ...] = (
    Param(
        "precision",
        Choice(("auto", "fp32", "bf16")),
        "auto",
        "speed (not hashed): network arithmetic in training; bf16 = autocast to bfloat16; "
        "auto = bf16 on CUDA, fp32 elsewhere",
    ),
    Param("channels_last", _SWITCH, "auto", "speed (not hashed): NHWC memory layout; auto = on with CUDA"),
    Param(
        "compile",
        _SWITCH,
        "auto",
        "speed (not hashed): torch.compile the network; auto = on with CUDA (slow warm-up on a CPU)",
    ),
    Param(
        "fused_optimizer",
        _SWITCH,
        "auto",
        "speed (not hashed): Adam/RMSprop/SGD as fused kernels (CUDA) or foreach lists; auto = fused "
        "on CUDA, the single-tensor loop elsewhere",
    ),
    Param(
        "data_on_device",
        _SWITCH,
        "auto",
        "speed (not hashed): keep the uint8 training set on the GPU (augmentation drawn there); "
        "auto = when it fits in a quarter of free memory, else pinned host memory",
    ),
)
# train.micro_batch (ncsn_core.microbatch): unset (None) leaves every spec as before it existed.
MICRO_BATCH = Param(
    "micro_batch",
    Either((Int(min=1), Choice(("auto",)))),
    None,
    "speed (not hashed): compute each step's batch in slices of this many examples, gradients "
    'accumulated (the same step within float rounding); "auto" = the largest that repro plan says '
    "fits the device's free memory (the whole batch on a CPU); unset = the whole batch",
)
SAMPLE_SPEED: tuple[Param, ...] = (
    Param(
        "precision",
        Choice(("fp32", "bf16")),
        "fp32",
        "speed (not hashed): the score network's arithmetic while sampling (bf16 = autocast)",
    ),
    Param(
        "compile",
        Choice(("off", "on", "graphs")),
        "off",
        "speed (not hashed): torch.compile the score step; graphs = mode reduce-overhead "
        "(CUDA graphs, one per batch shape; CUDA only)",
    ),
)
# What training logs where (issue 16, docs/tensorboard.md): not what it computes, in no hash.
TRAIN_LOGGING: tuple[Param, ...] = (
    Param(
        "tensorboard",
        Bool(),
        True,
        "logging (not hashed): TensorBoard events in train/tb/ at every log_every (loss, per-level "
        "losses, gradient norm, learning rate); a note and nothing else without the tensorboard package",
    ),
    Param(
        "wandb",
        Bool(),
        False,
        "logging (not hashed): the same figures to Weights & Biases, when wandb is installed",
    ),
    Param(
        "preview_samples",
        Int(min=0),
        16,
        "logging (not hashed): image grids drawn from the EMA weights (the model's without EMA) "
        "into TensorBoard / W&B at every preview_every: a preview, one Langevin step per level with "
        "α_i = σ_i² and a final denoising step, from a fixed seed (the training's random streams "
        "are not touched); 0 = none. Image data only",
    ),
    Param(
        "preview_every",
        Int(min=0),
        0,
        "logging (not hashed): iterations between preview grids; 0 = at every checkpoint_every",
    ),
)
# Per block: the fields left out of the hashes.
UNHASHED: dict[str, frozenset[str]] = {
    "train": frozenset(p.name for p in (*TRAIN_SPEED, MICRO_BATCH, *TRAIN_LOGGING)),
    "sample": frozenset(p.name for p in SAMPLE_SPEED),
}

# Where and how a run is launched (`repro run` options as defaults): the hardware never enters
# a hash — the same file on 1 or 8 GPUs, or under SLURM, is the same experiment (docs/scale.md).
LAUNCHER_FIELDS = (
    Param("gpus", Str(), "", 'GPUs: 0,1,2,3 | 0-7 | 8 (the first 8) | all; "" = the --gpus default'),
    Param("nproc", Int(min=1), 1, "processes per run, data-parallel (GPUs when present, else CPU/gloo)"),
    Param("parallel", Int(min=1), 1, "runs of a sweep at once on the CPU (with gpus: one per GPU)"),
    Param("launcher", Choice(("local", "slurm")), "local", "run here, or submit to SLURM through submitit"),
    Param("partition", Str(), "", "SLURM partition"),
    Param("gpus_per_node", Int(min=0), 0, "SLURM: GPUs (= processes) per node"),
    Param("nodes", Int(min=1), 1, "SLURM: nodes per run"),
    Param("time", Str(), "24:00:00", "SLURM time limit, HH:MM:SS"),
)

EXPERIMENT = BlockKind(
    "experiment",
    "top-level fields of an experiment",
    fields=(
        Param(
            "seed", Int(min=0), 0, "random seed; sweeping it gives repeats of the same run (not in the hash)"
        ),
        Param("paper", Str(), "", "which paper's table this experiment reproduces (groups the report)"),
        Param("description", Str(), "", "one line shown in reports"),
    ),
)

BLOCKS: tuple[BlockKind, ...] = (
    BlockKind("data", "the dataset", holds="data", required=True, example="digits"),
    BlockKind("noise", "the noise schedule", holds="noise", required=True, example="geometric"),
    BlockKind("network", "the score network", holds="network", needs=("loss",), example="ncsn"),
    BlockKind("loss", "the training objective", holds="loss", needs=("network",), example="dsm"),
    BlockKind(
        "train",
        "training loop settings",
        fields=(
            Param("optimizer", ComponentOf("optimizer"), Call("adam", ()), "optimizer, e.g. adam(lr = 1e-3)"),
            Param("batch_size", Int(min=1), 128, "training batch size"),
            Param("iterations", Int(min=0), 200_000, "optimizer steps"),
            Param("checkpoint_every", Int(min=1), 5_000, "steps between checkpoints (written atomically)"),
            Param("keep_checkpoints", Int(min=1), 3, "how many recent checkpoints to keep on disk"),
            Param(
                "keep_every",
                Int(min=1),
                None,
                "also keep every checkpoint at a multiple of this many steps (never pruned; the "
                "candidates of a select block); unset: only the keep_checkpoints newest",
            ),
            Param(
                "ema", Float(0.0, 1.0), 0.0, "EMA rate of the parameters (NCSNv2 Technique 5: 0.999; 0 = off)"
            ),
            Param("grad_clip", Float(min=0.0), 0.0, "clip the gradient norm to this value (0 = off)"),
            Param("log_every", Int(min=1), 100, "steps between log lines (losses are averaged in between)"),
            Param(
                "from",
                ComponentOf("weights"),
                None,
                "take the trained weights from a file instead of training (None: train), e.g. "
                'released(path = "checkpoints/ncsn_cifar10.pth", format = ncsn); docs/released.md',
            ),
            *TRAIN_SPEED,
            MICRO_BATCH,
            *TRAIN_LOGGING,
        ),
        default_with="network",
    ),
    BlockKind(
        "select",
        "checkpoint selection as the papers did it: sample each kept checkpoint with the sample "
        "block's init and stages, score it by a metric, pick the best (`sample { checkpoint = best }`)",
        fields=(
            Param(
                "metric",
                ComponentOf("metric"),
                Call("fid", ()),
                "the metric that picks the checkpoint, e.g. fid or fid_domain (its first output; the "
                "registry says whether lower is better)",
            ),
            Param("samples", Int(min=2), 1_000, "samples drawn per candidate checkpoint (the papers: 1,000)"),
            Param("from", Int(min=0), None, "first candidate step (unset: the first kept checkpoint)"),
            Param("to", Int(min=0), None, "last candidate step (unset: the last kept checkpoint)"),
            Param(
                "every",
                Int(min=1),
                None,
                "only kept checkpoints at multiples of this many steps (unset: every kept one)",
            ),
            Param("batch_size", Int(min=1), 1000, "samples drawn at once"),
        ),
        needs=("network", "sample"),
        stage="select",
        omit_when_absent=True,
    ),
    BlockKind(
        "sample",
        "sampling settings; the ordered `stage` list inside it runs one stage after another",
        fields=(
            Param(
                "init",
                ComponentOf("init"),
                Call("uniform", ()),
                "initial samples, e.g. uniform(low = -8, high = 8)",
            ),
            Param("samples", Int(min=1), 64, "how many samples to draw (the grid and samples.pt)"),
            Param("batch_size", Int(min=1), 1000, "samples drawn at once"),
            Param(
                "use_ema", Bool(), True, "sample with the EMA weights when training kept them (Technique 5)"
            ),
            Param(
                "checkpoint",
                Either((Int(min=0), Choice(("last", "best")))),
                "last",
                'which checkpoint to sample from: "last", a training step, or "best" (the one the '
                "select block chose)",
            ),
            *SAMPLE_SPEED,
        ),
        child="stage",
        child_field="stages",
        stage="sample",
    ),
    BlockKind(
        "evaluate",
        "evaluation settings; changing them never resamples",
        fields=(
            Param(
                "metrics",
                ListOf(ComponentOf("metric")),
                (),
                "metrics to compute, e.g. [inception_score, fid]",
            ),
            Param("samples", Int(min=2), 50_000, "samples drawn for evaluation (the papers: 50k)"),
            Param("batch_size", Int(min=1), 500, "feature-extraction batch size"),
            Param(
                "reference",
                Choice(("train", "test")),
                "train",
                "the dataset split compared against (recorded)",
            ),
            Param(
                "inception_weights",
                Str(),
                "",
                "path of the Inception weights file (offline machines); see docs/evaluation.md",
            ),
            Param(
                "cache", Bool(), True, "cache reference-set features (keyed by data, split and weights hash)"
            ),
        ),
        needs=("sample",),
        stage="evaluate",
    ),
    BlockKind(
        "interpolate",
        "NCSNv2's interpolation figure (the official code's sampling.interpolation): annealed "
        "Langevin dynamics whose chains in a row share the initial state and use the spherical "
        "interpolation cos θ·z_p + sin θ·z_q of two per-step noises, θ = 0 … π/2 along the row",
        fields=(
            Param("rows", Int(min=1), 8, "rows: initial states (the official code: sampling.batch_size)"),
            Param("columns", Int(min=2), 15, "samples per row (the official code: n_interpolations)"),
            Param("init", ComponentOf("init"), Call("uniform", ()), "the rows' initial states"),
            Param("steps_per_level", Int(min=1), 5, "T, Langevin steps per noise level (n_steps_each)"),
            Param(
                "step_size",
                Float(min=0.0, exclusive_min=True),
                2e-5,
                "ε of Alg. 1 (the official step_lr = ε/2)",
            ),
            Param("use_ema", Bool(), True, "use the EMA weights when training kept them"),
            Param(
                "checkpoint",
                Either((Int(min=0), Choice(("last",)))),
                "last",
                'which checkpoint: "last" or a training step (the official code: sampling.ckpt_id)',
            ),
        ),
        needs=("network",),
        stage="interpolate",
        omit_when_absent=True,
    ),
    BlockKind(
        "launcher",
        "where and how `repro run` launches the runs (defaults for its options; never hashed)",
        fields=LAUNCHER_FIELDS,
        stage="",
        omit_when_absent=True,
        fill_defaults=False,
    ),
)

BY_NAME = {b.name: b for b in BLOCKS}
NAMES = tuple(BY_NAME)
COMPONENT_BLOCKS = tuple(b.name for b in BLOCKS if b.holds)
FIXED_BLOCKS = tuple(b.name for b in BLOCKS if not b.holds)
FIELDS = tuple(p.name for p in EXPERIMENT.fields)


def block(name: str) -> BlockKind | None:
    return BY_NAME.get(name)


def stage_fields(stage: str) -> tuple[str, ...]:
    """The run spec's fields a stage's hash covers (its blocks, then their children)."""
    own = [b for b in BLOCKS if b.stage == stage]
    return tuple(b.name for b in own) + tuple(b.child_field for b in own if b.child)


def optional_fields() -> frozenset[str]:
    """The run spec fields left out of hashes and spec.json when their block is absent."""
    return frozenset(b.name for b in BLOCKS if b.omit_when_absent)


# What the select stage takes from the sample block: it draws its candidates' samples with the
# experiment's init, weights (EMA or not) and sampler stages, so its hash covers them too.
SELECT_FROM_SAMPLE = ("init", "use_ema")


def spec_fields() -> tuple[str, ...]:
    """Every run spec field that the blocks lower to, in stage order."""
    return tuple(f for s in STAGES for f in stage_fields(s))


# ----------------------------------------------------------------------------- published protocols
# `published "..." { fid = 25.32, protocol { samples = 50k, reference = train, ... } }`: how a
# paper computed its numbers. Not hashed (like the numbers themselves); the report compares a
# run's evaluation protocol with it and gives a verdict only where they match.
PROTOCOL = BlockKind(
    "protocol",
    "how the published numbers were computed (inside a `published` block; not hashed)",
    fields=(
        Param("samples", Int(min=1), None, "samples the metrics were computed on (the papers: 50k)"),
        Param("reference", Choice(("train", "test")), None, "the data split the FID compares against"),
        Param(
            "checkpoint",
            Either((Int(min=0), Choice(("best_fid", "last")))),
            None,
            "which checkpoint was evaluated: best_fid (the best of several by FID), last, or a step",
        ),
        Param("iterations", Int(min=0), None, "training iterations of the evaluated model"),
        Param(
            "inception_weights",
            Str(),
            None,
            "the Inception network: a file name or SHA-256 prefix (pt_inception-2015-12-05 is "
            "torch-fidelity's port of the TF weights the papers used)",
        ),
        Param(
            "implementation", Str(), None, "the metric code the paper used (e.g. the TF Inception scripts)"
        ),
    ),
)
PROTOCOL_KEYS = tuple(p.name for p in PROTOCOL.fields)
