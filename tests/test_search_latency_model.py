"""`sliver search` YAML: the `latency_model` field (an operator table or the transfer model standing in for LINAS's
latency predictor), its one-line errors, and that LINAS really receives the model."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr
from typer.testing import CliRunner

from sliver.bench.nb201 import data_root
from sliver.cli import app
from sliver.config import ConfigError, validate
from sliver.search.config import SearchConfig, build_search

HAVE_NB201 = (data_root() / "nb201" / "nb201_acc_latency.csv").is_file()
needs_nb201 = pytest.mark.skipif(not HAVE_NB201, reason="NB201 table not in ../shared/data (set SLIVER_DATA)")

NB201 = {"problem": {"kind": "nb201", "device": "raspi4"}, "objectives": ["accuracy", "latency_ms"], "budget": 10, "store": None}
SUPERNET = {"problem": {"kind": "supernet", "checkpoint": "ckpt.pt", "target": "cpu-torch-b1"},
            "objectives": ["macs", "latency_ms"], "budget": 10, "store": None}


@pytest.mark.parametrize(
    "cfg, message",
    [
        (dict(NB201, latency_model={"transfer": {}, "lut": "lut.yaml"}), "exactly one of 'lut'"),
        (dict(NB201, latency_model={"metric": "latency_ms"}), "exactly one of 'lut'"),
        (dict(NB201, latency_model={"transfer": {}}, strategy={"name": "random"}), "only the linas strategy"),
        (dict(NB201, latency_model={"transfer": {}}, strategy={"name": "linas", "options": {"latency_model": "x"}}), "give the latency model once"),
        (dict(NB201, latency_model={"transfer": {}, "metric": "energy"}), "'energy' is neither an objective"),
        (dict(NB201, latency_model={"lut": "lut.yaml"}), "latency_model.lut: an operator table applies to a supernet"),
        (dict(SUPERNET, latency_model={"transfer": {}}), "latency_model.transfer.sources: name the hardware targets"),
        (dict(SUPERNET, latency_model={"transfer": {"sources": ["cpu-ort-b1"], "devices": ["pixel3"]}}),
         "latency_model.transfer.devices: applies to an nb201 problem"),
        (dict(SUPERNET, latency_model={"transfer": {"sources": ["cpu-ort-b1"], "networks": 3}}), "networks"),
        (dict(SUPERNET, latency_model={"transfer": {"sources": ["cpu-ort-b1"]}},
              problem=dict(SUPERNET["problem"], quantization={"search": True})), "source runtimes time float networks"),
        (dict(NB201, latency_model={"transfer": {"sources": ["cpu-ort-b1"]}}), "latency_model.transfer.sources: source runtimes apply"),
        (dict(SUPERNET, latency_model={"lut": "l.yaml"}, problem=dict(SUPERNET["problem"], quantization={"search": True})),
         "cannot stand in for a quantisation search"),
        (dict(NB201, latency_model={"transfer": {"devices": []}}), "latency_model.transfer.devices"),
    ],
)
def test_bad_latency_model_is_one_clear_line(cfg, message):
    with pytest.raises(ConfigError, match=message) as info:
        validate(SearchConfig, cfg)
    assert len(str(info.value).splitlines()) == 1


@needs_nb201
def test_nb201_transfer_stand_in_reaches_linas_and_ranks_the_device(tmp_path):
    from sliver.bench.nb201 import NB201 as Table

    table = Table("raspi4")
    # three measured cells on the searched device sharpen the prior of the other devices
    rows = [10, 500, 9000]
    (tmp_path / "raspi4.csv").write_text("arch_str,latency_ms\n" + "".join(
        f"{table.table['arch_str'].iat[i]},{table.table['lat_ms_raspi4'].iat[i]}\n" for i in rows))
    others = ["pixel3", "samsung_a50", "gold_6240", "eyeriss"]
    cfg = validate(SearchConfig, dict(NB201, latency_model={"transfer": {"devices": others, "samples": str(tmp_path / "raspi4.csv")}}))
    search, _ = build_search(cfg)
    model = search.strategy.latency_model
    assert search.strategy.latency_metric == "latency_ms"
    configs = [{"ops": list(k)} for k in list(table.index)[::50]]
    predicted = np.asarray(model(configs))
    truth = np.array([table.values(c)["latency_ms"] for c in configs])
    assert predicted.shape == truth.shape and (predicted > 0).all()
    assert spearmanr(predicted, truth)[0] > 0.8  # other devices' latencies rank the Raspberry Pi's


@needs_nb201
def test_nb201_transfer_errors_name_the_field(tmp_path):
    for transfer, message in [
        ({"devices": ["raspi5"]}, "latency_model.transfer.devices: 'raspi5' is not in the NB201 table"),
        ({"devices": ["raspi4"]}, "is the searched device itself"),
        ({"samples": str(tmp_path / "none.csv")}, "latency_model.transfer.samples: .* not found"),
    ]:
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            build_search(validate(SearchConfig, dict(NB201, latency_model={"transfer": transfer})))
    (tmp_path / "bad.csv").write_text("arch_str,latency_ms\n|nope~0|,3.0\n")
    with pytest.raises(ValueError, match="is not an NB201 cell"):
        build_search(validate(SearchConfig, dict(NB201, latency_model={"transfer": {"samples": str(tmp_path / "bad.csv")}})))


@needs_nb201
def test_cli_search_with_transfer_stand_in_runs_and_logs_the_model(tmp_path):
    body = ("problem: {kind: nb201, device: raspi4}\nstore: null\nobjectives: [accuracy, latency_ms]\nbudget: 12\n"
            "strategy: {name: linas, options: {n_init: 8, batch: 4, inner: exhaustive, samples: 4}}\n"
            "latency_model: {transfer: {devices: [pixel3, eyeriss]}}\n")
    path = tmp_path / "search.yaml"
    path.write_text(body)
    out = CliRunner().invoke(app, ["search", str(path)])
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())  # the console wraps long lines
    assert "latency model: transfer to raspi4" in text and "falling back to the prior" in text
    assert "latency_ms from the given latency model, refitted on 8 measured points" in text  # LINAS used it, learning
    assert "refitted on 12 measured points" not in text  # the last batch is measured, not predicted
    assert "12 unique evaluations" in text


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from sliver.elastic.mobilenet import ElasticMobileNet
    from sliver.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    net = ElasticMobileNet.from_preset("tiny")
    path = tmp_path_factory.mktemp("ckpt") / "ckpt.pt"
    save_checkpoint(path, {"model": net.state_dict(), "supernet": net.supernet_config()})
    return path, net


def test_supernet_lut_stand_in_checks_fingerprint_and_coverage(checkpoint, tmp_path):
    from sliver.measure.hardware import HardwareTarget
    from sliver.predict.lut import LUTLatencyModel, OperatorLUT, enumerate_operators

    path, net = checkpoint
    target = HardwareTarget.preset("cpu-torch-b1")
    ops = list(enumerate_operators(net))
    lut = OperatorLUT.for_target(target)
    lut.entries = {k: 0.1 * (i + 1) for i, k in enumerate(ops)}
    lut.save(tmp_path / "lut.yaml")
    cfg = dict(SUPERNET, problem=dict(SUPERNET["problem"], checkpoint=str(path)), latency_model={"lut": str(tmp_path / "lut.yaml")})
    search, _ = build_search(validate(SearchConfig, cfg))
    model = search.strategy.latency_model
    assert isinstance(model, LUTLatencyModel)
    config = net.space.sample(0, n=1)[0]
    assert model([config])[0] == pytest.approx(lut.predict(net.arch_config(config)))

    OperatorLUT.for_target(HardwareTarget.preset("cpu-torch-b1-t2")).save(tmp_path / "other.yaml")
    with pytest.raises(ValueError, match="latency_model.lut: lookup table was built for fingerprint"):
        build_search(validate(SearchConfig, dict(cfg, latency_model={"lut": str(tmp_path / "other.yaml")})))
    lut.entries.pop(ops[0])
    lut.save(tmp_path / "partial.yaml")
    with pytest.raises(ValueError, match="latency_model.lut: .* lacks 1 of this super-network's operators"):
        build_search(validate(SearchConfig, dict(cfg, latency_model={"lut": str(tmp_path / "partial.yaml")})))
    with pytest.raises(FileNotFoundError, match="sliver latency build-lut"):
        build_search(validate(SearchConfig, dict(cfg, latency_model={"lut": str(tmp_path / "absent.yaml")})))


@pytest.mark.slow
def test_supernet_runtime_transfer_measures_the_sources_once_and_reaches_linas(checkpoint, tmp_path):
    from sliver.predict.transfer import RuntimeTransfer

    path, net = checkpoint
    db = f"sqlite:///{tmp_path / 's.db'}"
    cfg = dict(SUPERNET, problem=dict(SUPERNET["problem"], checkpoint=str(path)), store=db, budget=10,
               strategy={"name": "linas", "options": {"n_init": 6, "batch": 2}},
               latency_model={"transfer": {"sources": ["cpu-ort-b1", "cpu-ov-b1"], "networks": 10}})
    lines: list[str] = []
    search, store = build_search(validate(SearchConfig, cfg), log=lines.append)
    model = search.strategy.latency_model
    assert isinstance(model, RuntimeTransfer) and model.runtimes == ["cpu-ort-b1", "cpu-ov-b1"]
    assert "measuring 10 sub-networks on cpu-ort-b1, cpu-ov-b1 for the transfer (0 found in the store)" in lines[0]
    assert "latency model: transfer to cpu-torch-b1" in lines[1] and "falling back to the prior" in lines[1]
    assert store.count_measurements() == 20  # kept, keyed by each source's fingerprint
    result = search.run()
    assert result.n_evaluations == 10 and result.n_failed == 0
    assert any("latency_ms from the given latency model, refitted on" in line for line in search.strategy.log)
    predicted = model(net.space.sample(1, n=5))
    assert len(predicted) == 5 and min(predicted) > 0
    before = store.count_measurements()
    store.close()

    # again: the sources come from the store, and the target's own latencies are the first samples
    lines.clear()
    search, store = build_search(validate(SearchConfig, dict(cfg, study="again")), log=lines.append)
    assert not any("measuring" in line for line in lines)
    assert "from 10 samples" in lines[0]
    assert store.count_measurements() == before
    store.close()
    with pytest.raises(ValueError, match="'cpu-torch-b1' is the searched target itself"):
        build_search(validate(SearchConfig, dict(cfg, latency_model={"transfer": {"sources": ["cpu-torch-b1"], "networks": 10}})))
