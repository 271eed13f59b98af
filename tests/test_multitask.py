"""ElasticMultiTask, the multi-task data and tasks, CI-KD and the training loop."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from sliver.config import ConfigError, validate
from sliver.elastic.base import build_extracted
from sliver.elastic.multitask import ElasticMultiTask, multitask_costs
from sliver.measure.base import Evaluator
from sliver.measure.evaluator import evaluate
from sliver.multitask import MultiTaskData, MultiTaskEvaluator, heads_for, load_multitask_data
from sliver.multitask.tasks import get_task, psnr_per_example, soft_label_loss
from sliver.multitask.train import MultiTaskRunConfig, TaskWeighting, ci_kd, task_losses, train_supernet
from sliver.store import ResultStore
from sliver.train.checkpoint import load_supernet

TASKS = ["cls", "denoise", "sr"]


def make_net(seed: int = 0) -> ElasticMultiTask:
    torch.manual_seed(seed)
    net = ElasticMultiTask(heads_for(TASKS))
    # non-trivial BN statistics and zero-initialised output convolutions made random, so extraction is really checked
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
        for head in net.heads.values():
            head.out.weight.normal_(0, 0.1)
    return net.eval()


def small(data: MultiTaskData, n_train: int = 256, n_eval: int = 128) -> MultiTaskData:
    cut = lambda ds, n: TensorDataset(*(t[:n] for t in ds.tensors))  # noqa: E731
    return MultiTaskData(cut(data.train, n_train), cut(data.val, n_eval), cut(data.calib, n_eval), data.image_size, data.spec)


@pytest.fixture(scope="module")
def data() -> MultiTaskData:
    return load_multitask_data()


def test_extraction_is_exact_for_random_configs():
    net = make_net()
    x = torch.rand(3, 1, 14, 14)
    configs = [net.max_config(), net.min_config()] + net.space.sample(np.random.default_rng(1), n=25)
    for config in configs:
        net.activate(config)
        with torch.no_grad():
            want = net(x)
            model = net.extract(config)
            got = model(x)
            # the JSON arch alone rebuilds the same model
            rebuilt = build_extracted(net.arch_config(config))
            rebuilt.load_state_dict(model.state_dict())
            again = rebuilt.eval()(x)
        assert set(got) == set(TASKS)
        for t in TASKS:
            assert torch.allclose(want[t], got[t], atol=1e-5), (config, t)
            assert torch.equal(got[t], again[t])
        assert not any("Elastic" in type(m).__name__ for m in model.modules())
    assert got["cls"].shape == (3, 10) and got["denoise"].shape == (3, 1, 14, 14) and got["sr"].shape == (3, 1, 28, 28)


def test_space_has_encoder_and_decoder_dimensions():
    net = make_net()
    assert net.space.names == ["enc_w", "dec_cls_w", "dec_denoise_w", "dec_sr_w"]
    assert net.space["enc_w"].length == 3
    assert net.space.count() == 4**3 * 4**3


def test_costs_match_the_extracted_model():
    net = make_net()
    for config in [net.max_config(), net.min_config()] + net.space.sample(np.random.default_rng(2), n=10):
        model = net.extract(config)
        costs = net.costs(config)
        assert costs["params"] == sum(p.numel() for p in model.parameters())
        macs = 0

        def hook(m, inp, out):
            nonlocal macs
            if isinstance(m, nn.Conv2d):
                macs += m.weight.numel() * out.shape[2] * out.shape[3]
            elif isinstance(m, nn.Linear):
                macs += m.weight.numel()

        handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        with torch.no_grad():
            model(torch.rand(1, 1, 14, 14))
        for h in handles:
            h.remove()
        assert costs["macs"] == macs == multitask_costs(net.arch_config(config))["macs"]


def test_decoder_width_changes_only_its_task():
    net = make_net()
    x = torch.rand(2, 1, 14, 14)
    a = net.max_config()
    b = {**a, "dec_sr_w": 0.25}
    with torch.no_grad():
        net.activate(a)
        out_a = net(x)
        net.activate(b)
        out_b = net(x)
    assert torch.equal(out_a["cls"], out_b["cls"]) and torch.equal(out_a["denoise"], out_b["denoise"])
    assert not torch.allclose(out_a["sr"], out_b["sr"])
    assert net.costs(b)["macs"] < net.costs(a)["macs"]


def test_bad_heads_are_one_line_errors():
    with pytest.raises(ValueError, match="heads.x.type"):
        ElasticMultiTask({"x": {"type": "segment"}})
    with pytest.raises(ValueError, match="identifier"):
        ElasticMultiTask({"a-b": {"type": "classify", "classes": 3}})
    with pytest.raises(ValueError, match="width_mults"):
        ElasticMultiTask(heads_for(["cls"]), width_mults=[0.5, 1.5])


def test_ci_kd_is_zero_for_the_full_config_and_positive_otherwise():
    net = make_net()
    x = torch.rand(8, 1, 14, 14)
    net.train()  # as in training: batch statistics
    assert float(ci_kd(net, x, net.max_config()).detach()) == 0.0
    for config in [net.min_config()] + net.space.sample(np.random.default_rng(3), n=5):
        if config["enc_w"] != [1.0, 1.0, 1.0]:
            assert float(ci_kd(net, x, config).detach()) > 0.0


def test_in_place_distillation_mixes_the_teacher_into_the_classifier_only():
    torch.manual_seed(0)
    tasks = [get_task(t) for t in TASKS]
    outputs = {"cls": torch.randn(4, 10), "denoise": torch.rand(4, 1, 14, 14), "sr": torch.rand(4, 1, 28, 28)}
    batch = {"label": torch.tensor([0, 1, 2, 3]), "clean": torch.rand(4, 1, 14, 14), "hr": torch.rand(4, 1, 28, 28)}
    teacher = {"cls": torch.randn(4, 10), "denoise": torch.rand(4, 1, 14, 14), "sr": torch.rand(4, 1, 28, 28)}
    plain = task_losses(outputs, batch, tasks)
    mixed = task_losses(outputs, batch, tasks, teacher, 0.5)
    soft = soft_label_loss(outputs["cls"], teacher["cls"])
    assert float(mixed["cls"]) == pytest.approx(0.5 * float(plain["cls"]) + 0.5 * float(soft))
    # dense targets are exact: the teacher's output is not mixed in
    assert torch.equal(mixed["denoise"], plain["denoise"]) and torch.equal(mixed["sr"], plain["sr"])
    # a student that copies the teacher's logits gets the smallest soft-label loss
    assert float(soft_label_loss(teacher["cls"], teacher["cls"])) < float(soft)


def test_data_is_seeded_and_consistent(data):
    again = load_multitask_data()
    for a, b in zip(data.val.tensors, again.val.tensors):
        assert torch.equal(a, b)
    x, label, clean, hr = data.val.tensors
    assert x.shape[1:] == (1, 14, 14) and hr.shape[1:] == (1, 28, 28) and clean.min() >= 0 and clean.max() <= 1
    # noise of std 0.2 around the clean image: about 14 dB; the clean image itself is perfect
    assert 12 < float(psnr_per_example(x, clean).mean()) < 18
    assert float((x - clean).std()) == pytest.approx(0.2, rel=0.05)
    with pytest.raises(ValueError, match="noise_std"):
        load_multitask_data(noise_std=0)


def test_uncertainty_weighting_learns_and_fixed_weights_are_fixed():
    w = TaskWeighting(TASKS, "uncertainty")
    losses = {"cls": torch.tensor(2.0), "denoise": torch.tensor(0.01), "sr": torch.tensor(0.02)}
    assert float(w(losses).detach()) == pytest.approx(2.03)
    opt = torch.optim.SGD(w.parameters(), lr=0.1)
    for _ in range(200):
        opt.zero_grad()
        w(losses).backward()
        opt.step()
    weights = w.weights()
    # at the optimum a task's weight is 1 / its loss: the small dense losses get weighted up
    assert weights["denoise"] > weights["sr"] > weights["cls"]
    fixed = TaskWeighting(TASKS, {"cls": 1.0, "denoise": 2.0, "sr": 0.0})
    assert float(fixed(losses)) == pytest.approx(2.02)


def test_run_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="task_weights"):
        validate(MultiTaskRunConfig, {"train": {"task_weights": {"cls": 1.0}}})
    with pytest.raises(ConfigError, match="ci_kd"):
        validate(MultiTaskRunConfig, {"train": {"ci_kd": -1}})
    with pytest.raises(ConfigError, match="distill_weight"):
        validate(MultiTaskRunConfig, {"train": {"distill_weight": 1.5}})


def test_evaluator_follows_the_protocol_and_the_store(data, tmp_path):
    net = make_net()
    ev = MultiTaskEvaluator(net, small(data), "test-hash", bn_batches=1)
    assert isinstance(ev, Evaluator)
    assert [o.name for o in ev.objectives] == ["cls_accuracy", "denoise_psnr", "sr_psnr", "macs", "params"]
    store = ResultStore(f"sqlite:///{tmp_path / 'r.db'}")
    first = evaluate(ev, net.min_config(), store)
    assert first.ok and not first.cached and 0 <= first.values["cls_accuracy"] <= 100
    assert first.values["macs"] == net.costs(net.min_config())["macs"]
    second = evaluate(ev, net.min_config(), store)
    assert second.cached and second.values == first.values


@pytest.mark.slow
def test_training_learns_and_resumes_exactly(data, tmp_path):
    sub = small(data, n_train=512, n_eval=256)
    run = MultiTaskRunConfig.model_validate({"train": {"epochs": 2, "batch_size": 64, "threads": 1, "bn_batches": 1}})
    net, path = train_supernet(run, tmp_path / "straight", data=sub)
    _, info = load_supernet(path)
    assert info["finished"] and info["epoch"] == 2
    lines = (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2

    class Stop(Exception):
        pass

    def stop(_line):
        raise Stop

    with pytest.raises(Stop):  # killed right after the first epoch's checkpoint
        train_supernet(run, tmp_path / "resumed", data=sub, log=stop)
    resumed, _ = train_supernet(run, tmp_path / "resumed", data=sub)
    for (k, a), b in zip(net.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    # training did something: the largest network denoises better than the noisy input (about 14 dB)
    import json

    assert json.loads(lines[-1])["max"]["denoise_psnr"] > 15
