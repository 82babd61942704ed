"""import-config, mapping: each official runner's sections (NCSN anneal/baseline/scorenet/toy, NCSNv2) → `.exp` blocks."""

from __future__ import annotations

from pathlib import Path

from dsl.importconfig_read import (  # noqa: F401
    _ACTS,
    KNOWN,
    Block,
    _double,
    num,
)


class _RunnerMappings:
    """The per-runner half of the importer; mixed into :class:`dsl.importconfig._Importer`."""

    def _ncsn(self, runner: str) -> list[Block]:
        if runner == "toy":
            return self._ncsn_toy()
        algo = self.get("training.algo", "str", "dsm")
        if algo not in ("dsm", "ssm"):
            self.fail("training.algo", f"'training.algo': {algo!r} is not dsm or ssm")
        ds = self.items.get("data.dataset")
        dataset = ds.value if ds is not None else ""
        data = self.data(("uniform", "always on in the NCSN runners: X / 256. * 255. + U / 256."))
        self.flag_off("model.batch_norm", "NCSN's CondRefineNetDilated uses no batch norm")
        train = Block("train")
        self.set_optimizer(train, has_eps=False)
        self.batch_and_checkpoints(train)
        self.iterations(train)
        self.unmapped("training.ngpu", "GPUs are chosen by repro run --gpus, not by the experiment")
        if runner == "scorenet":
            return self._ncsn_scorenet(data, train, algo)
        if runner == "baseline":
            noise = Block("noise geometric")
            noise.set("sigma_max", "0.01", "runners/baseline_runner.py: dsm_score_estimation(sigma=0.01)")
            noise.set("sigma_min", "0.01", "one noise level")
            noise.set("levels", "1", "")
            for k in ("model.sigma_begin", "model.sigma_end", "model.num_classes"):
                self.unmapped(k, "not read by BaselineRunner (σ = 0.01 fixed)")
            loss = Block("loss dsm")
            loss.set("weight", "1", "runners/baseline_runner.py: dsm_score_estimation, unweighted")
            self.unmapped("training.anneal_power", "not read by BaselineRunner")
            self.unmapped("training.n_particles", "not read by BaselineRunner (no SSM)")
        else:
            noise = self.noise()
            if algo == "ssm":
                loss = Block("loss ssm_vr")
                loss.note(self.c("training.algo") + ": anneal_sliced_score_estimation_vr")
                n = self.positive("training.n_particles", "int", 1)
                loss.set("n_particles", str(n), self.c("training.n_particles"))
                self.unmapped("training.anneal_power", "not read with algo ssm")
            else:
                loss = Block("loss dsm")
                loss.note(self.c("training.algo") + ": anneal_dsm_score_estimation")
                p = self.get("training.anneal_power", "float", 2.0)
                loss.set(
                    "weight", f"sigma ** {num(int(p) if p == int(p) else p)}", self.c("training.anneal_power")
                )
                self.unmapped("training.n_particles", "read only with algo ssm")
        network = Block(f"network {self.network_choice or 'ncsn'}")
        ngf = self.positive("model.ngf", "int", 64)
        network.set("ngf", str(ngf), self.c("model.ngf"))
        for k in ("model.n_particles", "model.lam", "model.z_dim", "model.nef", "model.ndf"):
            self.unmapped(k, "read only by ScoreNetRunner")
        self.unmapped("training.noise_std", "read only by ScoreNetRunner")
        sample = Block("sample")
        if runner == "baseline":
            sample.set("samples", "100", "runners/baseline_runner.py test(): 100 samples")
            sample.set("init", "uniform", "torch.rand: U[0, 1]")
            st = Block("stage langevin")
            st.set("steps", "1000", "Langevin_dynamics(samples, score, 1000, 0.00002)")
            st.set("step_size", "4e-5", "step_lr 0.00002 = ε/2")
        else:
            sample.set("samples", "25", "runners/anneal_runner.py test(): grid_size ** 2 = 25 samples")
            sample.set("init", "uniform", "torch.rand: U[0, 1]")
            st = Block("stage annealed_langevin")
            st.set("steps_per_level", "100", "anneal_Langevin_dynamics(samples, score, sigmas, 100, 0.00002)")
            st.set("step_size", "4e-5", "step_lr 0.00002 = ε/2 (Alg. 1's convention)")
            st.set(
                "final",
                "before_last_step",
                "anneal_runner.py keeps clamp(x) before each step: L·T − 1 updates",
            )
        sample.children.append(st)
        metrics = {"CIFAR10": "[inception_score, fid]", "MNIST": "[fid_domain, is_domain]"}.get(
            dataset, "[fid]"
        )
        ev = Block("evaluate")
        ev.set("metrics", metrics, "the NCSN code computes none; the paper's metrics (§5)")
        ev.set("samples", "50k", "the NCSN paper: 50,000 samples")
        return [data, noise, network, loss, train, sample, ev]

    def _ncsn_scorenet(self, data: Block, train: Block, algo: str) -> list[Block]:
        sigma = self.positive("training.noise_std", "float", 0.01)
        noise = Block("noise geometric")
        noise.set("sigma_max", num(sigma), self.c("training.noise_std") + " (the data are perturbed by it)")
        noise.set("sigma_min", num(sigma), "one noise level")
        noise.set("levels", "1", "")
        network = Block(f"network {self.network_choice or 'mlp'}")
        network.note("repro has no ResScore (models/scorenet.py, an encoder-decoder of nef/ndf filters):")
        network.note("an MLP of the default size stands in for it")
        for k in ("model.nef", "model.ndf", "model.z_dim", "model.lam", "model.n_particles", "model.ngf"):
            if k in self.items:
                network.note(f"{self.c(k)}: no counterpart in network {self.network_choice or 'mlp'}")
        if algo == "ssm":
            loss = Block("loss ssm_vr")
            loss.set("n_particles", "1", "sliced_score_estimation_vr(..., n_particles=1)")
            loss.set("weight", "1", "unweighted")
        else:
            loss = Block("loss dsm")
            loss.set("weight", "1", "dsm_score_estimation: unweighted")
        self.unmapped("training.anneal_power", "not read by ScoreNetRunner")
        self.unmapped("training.n_particles", "not read by ScoreNetRunner (n_particles=1 in the code)")
        self.unmapped("model.sigma_begin", "not read by ScoreNetRunner")
        sample = Block("sample")
        sample.note("ScoreNetRunner has no sampler; plain Langevin at the one level as the baseline's")
        sample.set("init", "uniform", "")
        st = Block("stage langevin")
        st.set("steps", "1000", "")
        st.set("step_size", "4e-5", "")
        sample.children.append(st)
        return [data, noise, network, loss, train, sample]

    def _ncsn_toy(self) -> list[Block]:
        self.unmapped("placeholder", "ToyRunner reads nothing from its config (runners/toy_runner.py)")
        for key in sorted(self.items):
            if key != "placeholder":
                self.unmapped(key, "not read by ToyRunner")
        src = "runners/toy_runner.py train()"
        data = Block("data mixture2d")
        data.note("models/gmm.py GMMDist: 1/5 N((-5,-5), I) + 4/5 N((5,5), I), the defaults")
        noise = Block("noise none")
        noise.note("sliced score matching on the data itself (NCSN Fig. 2)")
        network = Block("network mlp")
        network.set("hidden", "128", f"{src}: hidden_units = 128")
        network.set("layers", "3", "Linear-Softplus-Linear-Softplus-Linear")
        network.set("act", "softplus", "")
        loss = Block("loss ssm_vr")
        loss.note(f"{src}: sliced_score_estimation_vr(score, samples, n_particles=1)")
        train = Block("train")
        train.set("optimizer", "adam(lr = 1e-3)", f"{src}: optim.Adam(lr=0.001)")
        train.set("batch_size", "128", "teacher.sample((128,))")
        train.set("iterations", "10_000", "for step in range(10000)")
        sample = Block("sample")
        sample.set("samples", "1280", "runners/toy_runner.py: 1280 samples")
        sample.set("init", "uniform(low = -8, high = 8)", "torch.rand(1280, 2) * 16 - 8")
        st = Block("stage langevin")
        st.set("steps", "1000", "langevin_dynamics(score, init, lr=0.1, step=1000)")
        st.set("step_size", "0.1", "")
        sample.children.append(st)
        ev = Block("evaluate")
        ev.set("metrics", "[mode_weights, mmd]", "Fig. 2/3: the modes' weights")
        ev.set("samples", "1280", "")
        return [data, noise, network, loss, train, sample, ev]

    # ---- NCSNv2 (ermongroup/ncsnv2)
    def _ncsnv2(self) -> list[Block]:
        uni = self.get("data.uniform_dequantization", "bool", False)
        deq = ("uniform" if uni else "none", self.c("data.uniform_dequantization"))
        data = self.data(deq)
        if self.get("data.gaussian_dequantization", "bool", False):
            self.fail(
                "data.gaussian_dequantization",
                "'data.gaussian_dequantization: true' is not supported by repro",
            )
        else:
            data.note(f"{self.c('data.gaussian_dequantization')}")
        self.flag_off(
            "data.rescaled", "data in [-1, 1]; repro's networks map [0, 1] inputs to [-1, 1] themselves", data
        )
        self.unmapped("data.num_workers", "data loading is repro's own")

        dist = self.get("model.sigma_dist", "str", "geometric")
        if dist not in ("geometric", "uniform"):
            self.fail("model.sigma_dist", f"'model.sigma_dist': {dist!r} is not geometric or uniform")
        noise = self.noise("geometric" if dist != "uniform" else "linear")
        noise.note(self.c("model.sigma_dist"))

        ds = self.items.get("data.dataset")
        dataset = ds.value if ds is not None else ""
        stem = Path(self.file).stem
        # runners/ncsn_runner.py get_model builds NCSNv2's network for every config but LSUN/FFHQ,
        # configs/ncsn_original.yml (the NCSNv2 paper's NCSN baseline) included
        net = self.network_choice or {"LSUN": "ncsnv2_deeper", "FFHQ": "ncsnv2_deepest"}.get(
            dataset, "ncsnv2"
        )
        network = Block(f"network {net}")
        if stem == "ncsn_original" and self.network_choice is None:
            network.note(
                "configs/ncsn_original.yml: NCSN's settings, trained with NCSNv2's network as "
                "runners/ncsn_runner.py get_model builds it (--network ncsn for models/ncsn.py)"
            )
        else:
            network.note(f"runners/ncsn_runner.py get_model: {dataset or 'this dataset'} → {net}")
        ngf = self.positive("model.ngf", "int", 128)
        network.set("ngf", str(ngf), self.c("model.ngf"))
        act = self.get("model.nonlinearity", "str", "elu")
        if act not in _ACTS:
            self.fail("model.nonlinearity", f"'model.nonlinearity': {act!r} is not one of {', '.join(_ACTS)}")
        elif act != "elu":
            network.set("act", act, self.c("model.nonlinearity"))
        else:
            network.note(self.c("model.nonlinearity") + " (the default act)")
        norm = self.get("model.normalization", "str", "InstanceNorm++")
        if norm != "InstanceNorm++":
            self.fail(
                "model.normalization",
                f"'model.normalization': {norm!r} is not supported (only InstanceNorm++)",
            )
        else:
            network.note(self.c("model.normalization") + " (the network's own)")
        self.flag_off("model.spec_norm", "spectral normalisation", network)

        loss = Block("loss dsm")
        p = self.get("training.anneal_power", "float", 2.0)
        loss.set("weight", f"sigma ** {num(int(p) if p == int(p) else p)}", self.c("training.anneal_power"))

        train = Block("train")
        self.set_optimizer(train, has_eps=True)
        every = self.batch_and_checkpoints(train)
        iters = self.iterations(train)
        ema = self.get("model.ema", "bool", False)
        rate = self.get("model.ema_rate", "float", 0.999, required=False)
        if ema:
            train.set("ema", num(rate), f"{self.c('model.ema')}; {self.c('model.ema_rate')}")
        else:
            train.note(f"{self.c('model.ema')}: no EMA; {self.c('model.ema_rate')} unused")
        if self.get("training.snapshot_sampling", "bool", False, required=False):
            train.note(
                f"{self.c('training.snapshot_sampling')}: repro's preview grids (train.preview_samples)"
            )
        elif "training.snapshot_sampling" in self.items:
            train.note(f"{self.c('training.snapshot_sampling')}")
        self.unmapped("training.log_all_sigmas", "repro logs the loss per noise level always")

        sample, select, keep = self._ncsnv2_sample(iters, every)
        if keep is not None:
            train.lines.insert(len(train.lines), keep)
        ev = Block("evaluate")
        n4fid = self.positive("sampling.num_samples4fid", "int", 10_000)
        metrics = "[inception_score, fid]" if dataset == "CIFAR10" else "[fid]"
        ev.set(
            "metrics",
            metrics,
            "evaluation/fid_score.py" + (" (and the paper's IS)" if dataset == "CIFAR10" else ""),
        )
        ev.set("samples", num(n4fid), self.c("sampling.num_samples4fid"))
        self.unmapped("sampling.fid", "sample mode's FID batch; repro's evaluate stage always runs")
        for k in ("test.begin_ckpt", "test.end_ckpt", "test.batch_size"):
            self.unmapped(k, "main.py --test (test-set loss of each checkpoint) has no repro stage")
        return [data, noise, network, loss, train, *([select] if select else []), sample, ev]

    def _ncsnv2_sample(self, iters: int | None, every: int) -> tuple[Block, Block | None, str | None]:
        sample = Block("sample")
        n = self.positive("sampling.batch_size", "int", 64)
        sample.set("samples", str(n), self.c("sampling.batch_size") + " (the grid of main.py --sample)")
        if self.get("sampling.data_init", "bool", False):
            std = self.items.get("model.sigma_begin")
            sample.set(
                "init",
                f"data_noise(std = {num(float(std.value)) if std else '1.0'})",
                self.c("sampling.data_init") + " (data + σ₁·z)",
            )
        else:
            sample.set("init", "uniform", self.c("sampling.data_init") + " (U[0, 1])")
        step_lr = self.positive("sampling.step_lr", "float", 2e-5)
        steps = self.positive("sampling.n_steps_each", "int", 100)
        inpaint = self.get("sampling.inpainting", "bool", False, required=False)
        if self.get("sampling.interpolation", "bool", False, required=False):
            self.fail(
                "sampling.interpolation",
                "'sampling.interpolation: true' is not supported by repro (no interpolation stage)",
            )
        elif "sampling.interpolation" in self.items:
            sample.note(self.c("sampling.interpolation"))
        self.unmapped("sampling.n_interpolations", "read only with interpolation: true")
        st = Block("stage inpainting" if inpaint else "stage annealed_langevin")
        if "sampling.inpainting" in self.items:
            sample.note(self.c("sampling.inpainting"))
        st.set("steps_per_level", str(steps), self.c("sampling.n_steps_each"))
        st.set("step_size", num(_double(step_lr)), self.c("sampling.step_lr") + " = ε/2")
        final_only = self.get("sampling.final_only", "bool", True, required=False)
        if not final_only and not inpaint:
            st.set("record_every", "1", self.c("sampling.final_only") + " (every step's samples kept)")
        elif "sampling.final_only" in self.items:
            sample.note(self.c("sampling.final_only"))
        sample.children.append(st)
        if self.get("sampling.denoise", "bool", False):
            sample.children.append(Block("stage denoise"))
            sample.note(self.c("sampling.denoise") + " → stage denoise")
        else:
            sample.note(self.c("sampling.denoise") + ": no final denoising")

        # Which checkpoint: fast_fid's best (when asked and its range is valid) or ckpt_id.
        select: Block | None = None
        keep: str | None = None
        ckpt = self.get("sampling.ckpt_id", "opt_int", None, required=False)
        fast = self._fast_fid(step_lr, steps, iters)
        if self.checkpoint_choice == "fast_fid" and fast is not None:
            select = fast
            sample.set("checkpoint", "best", "the fast_fid sweep's best FID (--checkpoint fast_fid)")
            keep = f"keep_every = {num(5000)}  # the checkpoints fast_fid reads (range(begin, end + 1, 5000))"
            if "sampling.ckpt_id" in self.items:
                sample.note(f"{self.c('sampling.ckpt_id')}: superseded by fast_fid's choice")
        elif ckpt is None or (iters is not None and ckpt == iters):
            why = " (the last checkpoint)" if ckpt is not None else " (checkpoint.pth, the last)"
            sample.set("checkpoint", "last", self.c("sampling.ckpt_id") + why)
        else:
            if ckpt % every:
                self.fail(
                    "sampling.ckpt_id",
                    f"'sampling.ckpt_id': no checkpoint {ckpt}: snapshots are every {every} steps",
                )
            elif iters is not None and ckpt > iters:
                self.fail("sampling.ckpt_id", f"'sampling.ckpt_id': {ckpt} is after the last step ({iters})")
            else:
                sample.set("checkpoint", num(ckpt), self.c("sampling.ckpt_id"))
                if iters is not None:
                    k = (iters - ckpt) // every + 1
                    if k > 3:  # train.keep_checkpoints' default
                        keep = (
                            f"keep_checkpoints = {k}  # the newest {k}, back to checkpoint {ckpt:,} "
                            "(the official code keeps them all)"
                        )
        if self.checkpoint_choice == "ckpt_id":
            for key in KNOWN["ncsnv2"]["fast_fid"]:
                self.unmapped(f"fast_fid.{key}", "main.py --fast_fid (not used: --checkpoint ckpt_id)")
        return sample, select, keep

    def _fast_fid(self, step_lr: float, steps: int, iters: int | None) -> Block | None:
        if not any(k.startswith("fast_fid.") for k in self.items):
            return None
        begin = self.get("fast_fid.begin_ckpt", "int", 5000)
        end = self.get("fast_fid.end_ckpt", "int", iters or 5000)
        n = self.positive("fast_fid.num_samples", "int", 1000)
        bs = self.positive("fast_fid.batch_size", "int", 1000)
        fl = self.positive("fast_fid.step_lr", "float", step_lr)
        fs = self.positive("fast_fid.n_steps_each", "int", steps)
        if self.get("fast_fid.ensemble", "bool", False, required=False):
            self.fail(
                "fast_fid.ensemble",
                "'fast_fid.ensemble: true' is not supported by repro (no checkpoint ensembles)",
            )
        verbose_note = (
            f"{self.c('fast_fid.verbose')}: logging only" if "fast_fid.verbose" in self.items else None
        )
        if self.checkpoint_choice != "fast_fid":
            return None
        if begin > end or (iters is not None and begin > iters):
            self.notes.append(
                f"{self.c('fast_fid.begin_ckpt')}, {self.c('fast_fid.end_ckpt')}: an empty range "
                "(no checkpoint to select); sampling.ckpt_id is used"
            )
            return None
        for key, v, ref in (("fast_fid.step_lr", fl, step_lr), ("fast_fid.n_steps_each", fs, steps)):
            if v != ref:
                self.fail(
                    key,
                    f"'{key}' differs from sampling's ({self.items[key].raw}); repro selects with the sample "
                    "block's stages",
                    "make them equal, or use --checkpoint ckpt_id",
                )
        b = Block("select")
        b.set("metric", "fid", "runners/ncsn_runner.py fast_fid: get_fid")
        b.set("samples", num(n), self.c("fast_fid.num_samples"))
        b.set("from", num(begin), self.c("fast_fid.begin_ckpt"))
        b.set("to", num(min(end, iters) if iters is not None else end), self.c("fast_fid.end_ckpt"))
        b.set("every", num(5000), "range(begin_ckpt, end_ckpt + 1, 5000) in the runner")
        if bs != 1000:
            b.set("batch_size", str(bs), self.c("fast_fid.batch_size"))
        else:
            b.note(self.c("fast_fid.batch_size"))
        b.note(f"{self.c('fast_fid.step_lr')}; {self.c('fast_fid.n_steps_each')}: the sample block's stages")
        if "fast_fid.ensemble" in self.items:
            b.note(self.c("fast_fid.ensemble"))
        if verbose_note:
            b.note(verbose_note)
        return b
