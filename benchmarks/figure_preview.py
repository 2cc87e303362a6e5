"""Preview of Figs. 6, 10 and 11 from one freshly trained run each, outside the DVC pipeline.

Until the default sweep is regenerated (its checkpoints are not in git, and the proxy CLIP is not bit-reproducible
across machines), the pipeline's figures stage cannot draw the current figure code from the committed runs.  This
script pre-trains a proxy CLIP, trains preset F (seed 0) on the person and the vehicle layout of the synthetic
benchmark with the default profiles, and draws the centred Grad-CAM (with the share of non-constant maps over 64
test samples) and both Fig. 6 measures with the shared-component record, into ``--out`` (default
``results/preview``).  About 5 minutes on one core.

    python benchmarks/figure_preview.py --out results/preview
"""

import argparse
import contextlib
import time
from pathlib import Path

import torch

from mambapro import figures, results
from mambapro.config import resolve_config
from mambapro.pipeline import train_run
from mambapro.pretrain import pretrain


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="results/preview")
    p.add_argument("--work", default="build/preview", help="scratch folder for the proxy CLIP and the runs")
    args = p.parse_args()
    torch.set_num_threads(1)
    out, work = Path(args.out).resolve(), Path(args.work).resolve()
    (work / "build").mkdir(parents=True, exist_ok=True)
    if not (work / "data").exists():
        (work / "data").symlink_to(Path("data").resolve())
    with contextlib.chdir(work):
        start = time.time()
        if not Path("build/proxy_clip.pt").exists():
            pretrain("data/synthetic", "build/proxy_clip.pt", progress=False)
        for profile, name, title in (("default", "fig10_gradcam_person", "Fig. 10: persons"),
                                     ("default-vehicle", "fig11_gradcam_vehicle", "Fig. 11: vehicles")):
            run = train_run(profile, "F", 0, namespace=f"preview/{profile}", progress=False)
            print(f"{profile}: F seed 0, last-epoch test mAP {run['last']['mAP']:.1f}", flush=True)
            model, data = figures.load_run(resolve_config(profile, "F"),
                                           results.run_dir(f"preview/{profile}", "F", 0), 0)
            figures.gradcam(model, data, out, name, f"{title} (preview run)", 0)
            if profile == "default":
                figures.alignment(model, data, out, 0)
        print(f"wrote {out} in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
