"""Training engine: schedule (official sec. 4), checkpoints, resume, determinism, seeds summary."""

import math

import pytest
import torch

from mambapro.config import resolve_config
from mambapro.engine import make_scheduler
from mambapro.results import summarize_seeds


def _lrs(cfg, base=None):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([{"params": [p], "lr": base or cfg.train.base_lr}])
    sched = make_scheduler(opt, cfg)
    out = {}
    for epoch in range(1, cfg.train.epochs + 1):
        sched.step(epoch)
        out[epoch] = opt.param_groups[0]["lr"]
    return out


def test_schedule_matches_the_official_values():
    lrs = _lrs(resolve_config("rgbnt201", "F"))  # E = 60, W = 10, base 3.5e-4 (official sec. 4)
    for epoch, expected in {1: 3.815e-5, 9: 3.153e-4, 10: 3.266e-4, 30: 1.752e-4, 60: 3.5e-7}.items():
        assert lrs[epoch] == pytest.approx(expected, rel=1e-3), epoch
    # the log's "Base Lr: 3.81e-05" at epoch 1; warm-up is not prefixed: the cosine clock starts at 0
    assert lrs[10] == pytest.approx(3.5e-7 + 0.5 * (3.5e-4 - 3.5e-7) * (1 + math.cos(math.pi * 10 / 60)))


def test_backbone_group_warms_from_the_shared_floor():
    lrs = _lrs(resolve_config("rgbnt201", "G"), base=5e-6)
    assert lrs[1] == pytest.approx(3.5e-6 + (5e-6 - 3.5e-6) / 10)
    assert lrs[60] == pytest.approx(3.5e-7)


def test_seed_summary_is_mean_and_sample_std():
    runs = [{"seed": s, "last": dict.fromkeys(("mAP", "R1", "R5", "R10", "mINP"), v),
             "best": dict.fromkeys(("mAP", "R1", "R5", "R10", "mINP"), v + 1)} for s, v in ((0, 10.0), (1, 20.0))]
    s = summarize_seeds(runs)
    assert s["last/mAP/mean"] == 15.0 and s["best/R1/mean"] == 16.0
    assert s["last/mAP/std"] == pytest.approx(math.sqrt(50.0))
    with pytest.raises(ValueError):
        summarize_seeds([])


# ---------------------------------------------------------------------------------------------------------------
# Training on the tiny synthetic benchmark

import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from mambapro.checkpoints import CheckpointMismatch, load_checkpoint  # noqa: E402
from mambapro.config import apply_overrides  # noqa: E402
from mambapro.engine import train  # noqa: E402
from mambapro.weights import weights_digest  # noqa: E402


def tiny_cfg(root, preset="E", **sections):
    over = {"data": {"root": str(root), "image_size": [32, 16], "batch_size": 8, "num_instances": 4,
                     "test_batch_size": 16},
            "train": {"epochs": 3, "warmup_epochs": 1, "eval_every": 1}}
    for k, v in sections.items():
        over.setdefault(k, {}).update(v)
    train_over = over["train"]
    train_over["warmup_epochs"] = min(train_over["warmup_epochs"], train_over["epochs"] - 1)  # config.validate
    return resolve_config("bare", preset, over)


def _metrics(result):
    return {k: result[k] for k in ("last", "best")}, [r["loss"] for r in result["history"]]


def test_training_is_deterministic_and_resumes_exactly_after_a_kill(tiny_root, tmp_path):
    cfg = tiny_cfg(tiny_root)
    full = train(cfg, tmp_path / "full", seed=3, progress=False)
    again = train(cfg, tmp_path / "again", seed=3, progress=False)
    assert _metrics(full) == _metrics(again)  # same params and seed on the CPU: identical metrics
    with pytest.raises(KeyboardInterrupt):  # killed in the middle of epoch 2 (3 iterations per epoch)
        train(cfg, tmp_path / "killed", seed=3, progress=False, stop_after_iters=4)
    assert load_checkpoint(tmp_path / "killed" / "last.pt")["epoch"] == 1
    resumed = train(cfg, tmp_path / "killed", seed=3, progress=False)
    assert _metrics(resumed) == _metrics(full)
    saved = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert saved["best"] == full["best"] and saved["best"]["mAP"] == max(r["mAP"] for r in full["history"])
    assert (tmp_path / "killed" / "dvclive" / "metrics.json").is_file()


def test_a_process_killed_with_sigkill_resumes_to_the_same_metrics(tiny_root, tmp_path):
    """A real kill (SIGKILL of a ``python -m mambapro.engine`` process, no clean-up) right after its first epoch's
    checkpoint, i.e. inside epoch 2; the rerun resumes and ends with the metrics of an uninterrupted run."""
    import signal
    import time

    over = {"data.root": str(tiny_root), "data.image_size": [32, 16], "data.batch_size": 8,
            "data.num_instances": 4, "data.test_batch_size": 16, "train.epochs": 4, "train.warmup_epochs": 1,
            "train.eval_every": 1}
    cfg = resolve_config("bare", "E", over)
    full = train(cfg, tmp_path / "full", seed=3, progress=False)
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "mambapro.engine", "--profile", "bare", "--preset", "E", "--seed", "3", "--out",
           str(run), "--set",
           *[f"{k}={json.dumps(v)}" for k, v in over.items()]]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (run / "last.pt").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the training process ended early"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (run / "metrics.json").exists()
    assert load_checkpoint(run / "last.pt")["epoch"] < 4
    resumed = train(cfg, run, seed=3, progress=False)
    assert _metrics(resumed) == _metrics(full)


def test_checkpoints_load_weights_only_and_refuse_other_configs(tiny_root, tmp_path):
    cfg = tiny_cfg(tiny_root, "C", train={"epochs": 1})
    train(cfg, tmp_path / "run", seed=0, progress=False)
    ckpt = load_checkpoint(tmp_path / "run" / "best.pt", cfg, seed=0)  # weights_only=True
    assert ckpt["config"]["adapter"]["kind"] == "pfa"
    other = apply_overrides(cfg, {"adapter": {"kind": "bna"}})
    with pytest.raises(CheckpointMismatch, match=r"adapter.kind: checkpoint 'pfa' vs run 'bna'"):
        train(other, tmp_path / "run", seed=0, progress=False)
    with pytest.raises(CheckpointMismatch, match="seed 0, this run uses seed 1"):
        load_checkpoint(tmp_path / "run" / "last.pt", cfg, seed=1)


def test_a_run_is_not_resumed_on_changed_backbone_weights(tiny_root, tmp_path):
    """The proxy CLIP re-trained upstream (same path, other bytes): the old checkpoint is refused, not resumed."""
    import open_clip

    import mambapro.backbone  # noqa: F401  (registers mambapro-tiny with open_clip)

    weights = tmp_path / "clip.pt"
    torch.manual_seed(0)
    torch.save(open_clip.create_model("mambapro-tiny", force_image_size=(32, 32)).state_dict(), weights)
    cfg = tiny_cfg(tiny_root, "A", train={"epochs": 1}, backbone={"pretrained": str(weights)})
    train(cfg, tmp_path / "run", seed=0, progress=False)
    assert load_checkpoint(tmp_path / "run" / "last.pt", cfg)["pretrained_digest"] == weights_digest(cfg)
    torch.manual_seed(1)
    torch.save(open_clip.create_model("mambapro-tiny", force_image_size=(32, 32)).state_dict(), weights)
    with pytest.raises(CheckpointMismatch, match=r"other backbone weights .*clip.pt.*delete .*run to retrain"):
        train(cfg, tmp_path / "run", seed=0, progress=False)


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tiny_root, tmp_path):
    cfg = tiny_cfg(tiny_root, "C", train={"epochs": 2})
    train(cfg, tmp_path / "run", seed=0, progress=False)
    before = (tmp_path / "run" / "last.pt").read_bytes()
    bad = apply_overrides(cfg, {"train": {"epochs": 3, "base_lr": 1e30}})
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        train(bad, tmp_path / "bad", seed=0, progress=False)
    assert (tmp_path / "run" / "last.pt").read_bytes() == before


@pytest.mark.slow
def test_torchrun_with_two_gloo_processes_matches_one_process(tiny_root, tmp_path):
    args = ["--profile", "bare", "--preset", "E", "--seed", "0", "--set",
            f'data.root="{tiny_root}"', "data.image_size=[32,16]", "data.batch_size=16", "train.epochs=2",
            "train.warmup_epochs=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "mambapro.engine", "--out", str(tmp_path / "one"), *args],
                         env=env, capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          "29517", "-m", "mambapro.engine", "--out", str(tmp_path / "two"), *args],
                         env=env, capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-2000:]
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())
    # each process takes half of every PK batch (whole identities), so batch-hard mining and BN statistics see half
    # the batch: the metrics agree within tolerance, not bit for bit
    assert [r["epoch"] for r in m2["history"]] == [1, 2]
    assert abs(m1["last"]["mAP"] - m2["last"]["mAP"]) < 15.0, (m1["last"], m2["last"])


def test_optimizer_merges_tensors_with_the_official_settings():
    from mambapro.engine import make_optimizer
    from mambapro.model import build_model, param_groups

    cfg = resolve_config("bare", "G")  # CLIP(F) + all: backbone, weight and bias settings
    model = build_model(cfg, num_classes=10, num_cameras=3)
    official = {id(g["params"][0]): (g["lr"], g["weight_decay"]) for g in param_groups(model, cfg.train)}
    opt = make_optimizer(model, cfg)
    merged = {id(p): (g["lr"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]}
    assert merged == official
    assert len({v for v in official.values()}) == len(opt.param_groups) == 3 < len(official)


def test_merged_optimizer_trains_exactly_like_the_official_per_tensor_one(tiny_root, tmp_path, monkeypatch):
    import mambapro.engine as engine
    from mambapro.model import param_groups

    cfg = tiny_cfg(tiny_root, "F", train={"epochs": 2})
    merged = train(cfg, tmp_path / "merged", seed=0, progress=False)
    monkeypatch.setattr(engine, "make_optimizer", lambda model, cfg: torch.optim.Adam(param_groups(model, cfg.train)))
    official = train(cfg, tmp_path / "official", seed=0, progress=False)  # one group per tensor, for-loop Adam
    from mambapro.environment import mkl_branch

    if mkl_branch() == "AVX2":  # Intel CPUs on MKL's AVX2 branch: the two Adams agree to the bit (measured)
        assert _metrics(merged) == _metrics(official)
        return
    # Under the COMPATIBLE pin and on an AMD EPYC (measured) the for-loop Adam's square roots round differently from
    # the fused kernel's (7e-9 on unit tensors, with any ATen capability and MKL branch): the same training to float
    # rounding, not to the bit.
    (ours, losses), (theirs, their_losses) = _metrics(merged), _metrics(official)
    assert losses == pytest.approx(their_losses, rel=1e-5)
    for which in ("last", "best"):
        assert ours[which]["epoch"] == theirs[which]["epoch"]
        assert ours[which]["mAP"] == pytest.approx(theirs[which]["mAP"], abs=0.5)


# ---------------------------------------------------------------------------------------------------------------
# Paper scale on a GPU machine (CUDA is absent here: its calls are monkeypatched)

import argparse  # noqa: E402

import mambapro.checkpoints as checkpoints  # noqa: E402
import mambapro.engine as engine  # noqa: E402


def test_torchrun_on_cuda_gives_each_process_its_own_gpu(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", torch.device(d))))
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda b, **kw: calls.append(("init", b)))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert engine.resolve_device("auto") == torch.device("cuda", 0)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert engine.resolve_device("auto") == engine.resolve_device("cuda") == torch.device("cuda", 1)
    assert engine.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="LOCAL_RANK"):
        engine.resolve_device("cuda:0")  # every process on one GPU
    assert engine._maybe_init_distributed(torch.device("cuda", 1))
    assert calls == [("set_device", torch.device("cuda", 1)), ("init", "nccl")]  # set_device before NCCL starts


def test_autocast_only_with_amp_on_cuda(monkeypatch):
    monkeypatch.setattr(torch, "autocast", lambda *a, **kw: ("autocast", a, kw))
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert engine._autocast(cuda, amp=True) == ("autocast", ("cuda",), {"dtype": torch.float16})
    assert not isinstance(engine._autocast(cuda, amp=False), tuple)  # amp: false runs fp32 on CUDA too
    assert not isinstance(engine._autocast(cpu, amp=True), tuple)


def test_determinism_sets_the_cublas_workspace_and_turns_cudnn_benchmark_off(monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "x")  # monkeypatch restores the variable afterwards
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    engine.seed_everything(0)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
    assert torch.are_deterministic_algorithms_enabled()
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # a user's own setting is kept
    engine.seed_everything(0)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_weights_digest_is_computed_once_per_file_version(tmp_path):
    import hashlib

    weights = tmp_path / "w.pt"
    weights.write_bytes(b"a" * 1000)
    cfg = resolve_config("bare", None, {"backbone": {"pretrained": str(weights)}})
    first = weights_digest(cfg)
    assert first == hashlib.sha256(b"a" * 1000).hexdigest()[:16]
    stat = weights.stat()
    weights.write_bytes(b"b" * 1000)  # same size, mtime put back: the cached digest stands (not re-read)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert weights_digest(cfg) == first
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # another version: hashed again
    assert weights_digest(cfg) == hashlib.sha256(b"b" * 1000).hexdigest()[:16]


def _tiny_weights(path, seed=0):
    import open_clip

    import mambapro.backbone  # noqa: F401  (registers mambapro-tiny with open_clip)

    torch.manual_seed(seed)
    torch.save(open_clip.create_model("mambapro-tiny", force_image_size=(32, 32)).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def pretrained_f(tiny_root, tmp_path_factory):
    """Preset F (frozen tower from a weights file) trained for 2 epochs: (cfg, run folder, result)."""
    tmp = tmp_path_factory.mktemp("pretrained_f")
    cfg = tiny_cfg(tiny_root, "F", train={"epochs": 2}, backbone={"pretrained": str(_tiny_weights(tmp / "w.pt"))})
    return cfg, tmp / "run", train(cfg, tmp / "run", seed=0, progress=False)


def test_frozen_tower_checkpoints_keep_only_what_training_changes(pretrained_f):
    cfg, run, result = pretrained_f
    ckpt = load_checkpoint(run / "last.pt", cfg, seed=0)
    model, _ = checkpoints.restore_model(run / "last.pt", cfg)
    full = model.state_dict()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n for n, _ in model.named_buffers()}
    assert not [k for k in ckpt["model"] if k.startswith("backbone.tower.")]  # the weights file restores those
    assert trainable | buffers <= set(ckpt["model"]) and buffers
    tower = sum(v.numel() for k, v in full.items() if k.startswith("backbone.tower."))
    saved = sum(v.numel() for v in ckpt["model"].values())
    assert saved == sum(v.numel() for v in full.values()) - tower
    print(f"tiny F: checkpoint keeps {saved} of {saved + tower} model numbers")
    # best.pt is for evaluation only; the last epoch's last.pt no longer needs Adam's moments (the run is over)
    best = load_checkpoint(run / "best.pt", cfg)
    assert "optimizer" not in best and "optimizer" not in ckpt and ckpt["epoch"] == 2
    torch.set_num_threads(2)  # evaluation pins one thread too: the same numbers whatever the core count
    assert engine.evaluate_checkpoint(run / "best.pt", cfg)["full"]["mAP"] == result["best"]["mAP"]
    assert torch.get_num_threads() == 1
    assert _metrics(train(cfg, run, seed=0, progress=False)) == _metrics(result)  # a finished run "resumes" too


def test_a_frozen_tower_run_resumes_exactly_from_a_partial_checkpoint(pretrained_f, tmp_path):
    cfg, _, result = pretrained_f
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "killed", seed=0, progress=False, stop_after_iters=4)
    ckpt = load_checkpoint(tmp_path / "killed" / "last.pt")
    assert ckpt["epoch"] == 1 and ckpt["optimizer"]["state"]  # mid-run: Adam's state is kept
    assert _metrics(train(cfg, tmp_path / "killed", seed=0, progress=False)) == _metrics(result)


def test_restoring_refuses_a_checkpoint_that_does_not_fit(pretrained_f, tmp_path):
    cfg, run, _ = pretrained_f
    ckpt = load_checkpoint(run / "best.pt")
    lacking = {**ckpt, "model": {k: v for k, v in ckpt["model"].items() if not k.startswith("fuse_head.")}}
    torch.save(checkpoints.seal(lacking), tmp_path / "lacking.pt")  # sealed: only the fit is wrong
    with pytest.raises(CheckpointMismatch, match=r"lacking.pt .*missing .*fuse_head"):
        checkpoints.restore_model(tmp_path / "lacking.pt", cfg)
    extra = {**ckpt, "model": {**ckpt["model"], "extra.weight": torch.zeros(1)}}
    torch.save(checkpoints.seal(extra), tmp_path / "extra.pt")
    with pytest.raises(CheckpointMismatch, match=r"unexpected .*extra.weight"):
        checkpoints.restore_model(tmp_path / "extra.pt", cfg)


def test_full_fine_tuning_saves_the_whole_trainable_tower(tiny_root, tmp_path):
    cfg = tiny_cfg(tiny_root, "G", train={"epochs": 1},
                   backbone={"pretrained": str(_tiny_weights(tmp_path / "w.pt"))})
    train(cfg, tmp_path / "run", seed=0, progress=False)
    model, ckpt = checkpoints.restore_model(tmp_path / "run" / "best.pt", cfg)
    tower = {n for n, _ in model.named_parameters() if n.startswith("backbone.tower.")}
    assert tower and tower <= set(ckpt["model"])


def _poison_after(n_steps):
    """make_optimizer whose ``n_steps``-th update leaves a NaN in a trainable parameter (and a finite loss)."""
    real = engine.make_optimizer

    def make(model, cfg):
        opt, count = real(model, cfg), [0]
        step = opt.step

        def poisoned(*args, **kwargs):
            out = step(*args, **kwargs)
            count[0] += 1
            if count[0] == n_steps:
                with torch.no_grad():
                    next(p for p in model.parameters() if p.requires_grad).view(-1)[0] = float("nan")
            return out

        opt.step = poisoned
        return opt

    return make


def test_a_nan_from_an_epochs_last_update_is_never_saved(tiny_root, tmp_path, monkeypatch):
    cfg = tiny_cfg(tiny_root, "C", train={"epochs": 2})  # 3 updates per epoch
    monkeypatch.setattr(engine, "make_optimizer", _poison_after(6))
    with pytest.raises(FloatingPointError,
                       match=r"epoch 2, iteration 3 .*last good checkpoint .*last.pt \(epoch 1\) is kept"):
        train(cfg, tmp_path / "run", seed=0, progress=False)
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["epoch"] == 1 and all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert load_checkpoint(tmp_path / "run" / "best.pt")["epoch"] == 1
    monkeypatch.undo()
    assert train(cfg, tmp_path / "run", seed=0, progress=False)["history"][-1]["epoch"] == 2  # resumable


def test_a_nan_before_any_checkpoint_says_there_is_none(tiny_root, tmp_path, monkeypatch):
    cfg = tiny_cfg(tiny_root, "C", train={"epochs": 2})
    monkeypatch.setattr(engine, "make_optimizer", _poison_after(3))
    with pytest.raises(FloatingPointError, match=r"epoch 1, iteration 3 .*no checkpoint of this run"):
        train(cfg, tmp_path / "run", seed=0, progress=False)
    assert not (tmp_path / "run" / "last.pt").exists() and not (tmp_path / "run" / "best.pt").exists()
    bad = apply_overrides(cfg, {"train": {"base_lr": 1e30}})
    monkeypatch.undo()
    with pytest.raises(FloatingPointError, match=r"non-finite .*epoch 1.*no checkpoint of this run"):
        train(bad, tmp_path / "bad", seed=0, progress=False)


@pytest.mark.parametrize("kind", ["empty", "junk", "pickle"])
def test_unreadable_checkpoints_name_the_path_the_cause_and_the_fix(kind, tiny_root, tmp_path):
    path = tmp_path / "run" / "last.pt"
    path.parent.mkdir()
    if kind == "pickle":  # a pickle weights_only refuses
        torch.save({"config": argparse.Namespace(a=1)}, path)
    else:
        path.write_bytes(b"" if kind == "empty" else b"not a checkpoint\x00\x01")
    cause = {"empty": "empty or truncated", "junk": "Unsupported operand", "pickle": "argparse.Namespace"}[kind]
    with pytest.raises(checkpoints.CheckpointError, match=rf"{path}.*{cause}.*delete {path.parent}") as err:
        load_checkpoint(path)
    assert "weights_only=False" not in str(err.value)
    with pytest.raises(checkpoints.CheckpointError, match=str(path)):  # a resume names it too
        train(tiny_cfg(tiny_root, "C", train={"epochs": 1}), path.parent, seed=0, progress=False)


def test_cpu_training_gives_the_same_numbers_whatever_the_thread_count(tiny_root, tmp_path):
    """Training pins one intra-op thread on the CPU, so a run started with more threads (a plain `dvc repro`)
    computes what .ci/repro's one-thread workers compute."""
    cfg = tiny_cfg(tiny_root)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = train(cfg, tmp_path / "two", seed=5, progress=False)
        assert torch.get_num_threads() == 1
        one = train(cfg, tmp_path / "one", seed=5, progress=False)
    finally:
        torch.set_num_threads(before)
    assert _metrics(two) == _metrics(one)
