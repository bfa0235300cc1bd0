"""Run every VAE and GAN recipe (several seeds, in parallel worker processes on one GPU), choose the winners on the
validation split by rules fixed in advance, then measure the winners, and only them, on the test split.

    PYTHONPATH=. python -m bench.experiments.run_all --out OUT [--workers 14] [--deadline 420] [--smoke]

Rules. VAE, per latent size: the recipe with the best mean validation ELBO (100 samples per digit, seeded) over its
seeds, among recipes whose worst-case CPU cost is <= 450 baseline epochs. GAN: the recipe with the lowest mean
validation-split Frechet distance at epoch 90 over its seeds, among the CPU-feasible recipes (dcgan-m excluded)
whose every seed has all class shares in [5%, 15%] and at most twice the real digits' isolated pixels per image.
"""
import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

WORKER = {}


def init_worker(tmp: str, smoke: bool) -> None:
    torch.set_num_threads(1)
    from helpers.models import DigitClassifier

    from .common import load_split, pick_device
    device = pick_device()
    data = load_split(device)
    from helpers import evaluation_sets
    classifier = DigitClassifier().to(device)
    classifier.load_state_dict(torch.load(Path(tmp) / "classifier.pt", weights_only=True))
    classifier.eval()
    with torch.no_grad():
        val_features = classifier.features(data.val_x)
    WORKER.update(tmp=Path(tmp), smoke=smoke, data=data, validation_x=evaluation_sets(data)[0],
                  classifier=classifier, val_features=val_features,
                  fixed_z=torch.randn(64, 64, generator=torch.Generator().manual_seed(0)).to(device))


def run_job(job: dict) -> dict:
    from . import gan_sweep, vae_sweep
    w, tag = WORKER, job["tag"]
    if job["kind"] == "vae":
        if w["smoke"]:
            vae_sweep.RECIPES[job["recipe"]] = {**vae_sweep.RECIPES[job["recipe"]], "epochs": 3}
        model, result = vae_sweep.run(job["recipe"], job["latent_dim"], job["seed"], w["data"], w["validation_x"])
    else:
        extra = dict(epochs=2, snapshots=(1, 2)) if w["smoke"] else {}
        models, grids, result = gan_sweep.run(job["recipe"], job["seed"], w["data"], w["classifier"],
                                              w["val_features"], w["fixed_z"], **extra)
        for variant, model in models.items():
            torch.save(grids[variant], w["tmp"] / f"grid_{tag}_{variant}.pt")
            torch.save({"config": model.config, "state_dict": model.state_dict()},
                       w["tmp"] / f"model_{tag}_{variant}.pt")
        result["tag"] = tag
        return result
    torch.save({"config": model.config, "state_dict": model.state_dict()}, w["tmp"] / f"model_{tag}.pt")
    result["tag"] = tag
    return result


def choose_vae(results: list, latent_dim: int, seeds: set) -> str:
    """Best mean validation ELBO over `seeds` among CPU-feasible recipes that finished every one of them."""
    from .vae_sweep import RECIPES, cpu_cost, recipe
    candidates = [n for n in RECIPES if cpu_cost(recipe(n)) <= 450]
    runs = [r for r in results if r["kind"] == "vae" and r["latent_dim"] == latent_dim]
    scores = {}
    for name in candidates:
        values = [r["val_elbo_100"] for r in runs if r["recipe"] == name and r["seed"] in seeds]
        if len(values) == len(seeds):
            scores[name] = float(np.mean(values))
    return max(scores, key=scores.get)


def choose_gan(results: list, real_isolated: float, seeds: set) -> tuple:
    """(recipe, variant) with the lowest mean validation Frechet distance at the last epoch over `seeds`, among the
    CPU-feasible ones that finished every seed, those meeting the class and salt-and-pepper bars first."""
    from .gan_sweep import RECIPES
    scores = {}
    for name in [n for n in RECIPES if not n.startswith("dcgan-m")]:
        runs = [r for r in results if r["kind"] == "gan" and r["recipe"] == name and r["seed"] in seeds]
        if len(runs) != len(seeds):
            continue
        for variant in runs[0].get("variants", {"raw": None}):
            figures = [r.get("variants", {"raw": r})[variant] for r in runs]
            last = max(figures[0]["val_frechet_by_epoch"], key=int)
            ok = all(0.05 <= min(f["class_histogram"]) and max(f["class_histogram"]) <= 0.15
                     and f["isolated_per_image"] <= 2 * real_isolated for f in figures)
            scores[(name, variant)] = (not ok, float(np.mean([f["val_frechet_by_epoch"][last] for f in figures])))
    return min(scores, key=scores.get)


def montage(grids: dict, path: Path, columns: int = 3) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from helpers.plotting import image_grid
    names = list(grids)
    rows = -(-len(names) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.3 * columns, 3.6 * rows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.set_axis_off()
    for ax, name in zip(axes.flat, names):
        ax.imshow(image_grid(grids[name], nrow=8), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(name, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.environ.get("OUT", "bench/experiments/out"))
    parser.add_argument("--workers", type=int, default=14)
    parser.add_argument("--deadline", type=float, default=420, help="seconds after which no new job starts")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="a few epochs of two recipes each, to test the code")
    parser.add_argument("--vae", default="", help="comma-separated VAE recipes (default: all)")
    parser.add_argument("--gan", default="", help="comma-separated GAN recipes (default: all)")
    parser.add_argument("--previous", default="", help="results.json of an earlier call: its runs join the choice")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    from helpers import evaluation_sets
    from helpers.measures import gaussian_frechet_distance, sample_quality, train_classifier

    from . import gan_sweep, vae_sweep
    from .common import load_split, pick_device, salt_and_pepper
    device = pick_device()
    print(f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'})", flush=True)
    data = load_split(device)
    validation_x, test_x = evaluation_sets(data)
    torch.manual_seed(0)
    classifier = train_classifier(data, epochs=5 if args.smoke else 50)
    tmp = Path(tempfile.mkdtemp())
    torch.save(classifier.state_dict(), tmp / "classifier.pt")
    with torch.no_grad():
        features = {split: classifier.features(getattr(data, f"{split}_x")) for split in ("train", "val", "test")}
        accuracy = {s: (classifier(getattr(data, f"{s}_x")).argmax(1) == getattr(data, f"{s}_y")).float().mean().item()
                    for s in ("val", "test")}
    summary = {"classifier_accuracy": accuracy,
               "frechet_floor_train_vs_val": gaussian_frechet_distance(features["train"], features["val"]),
               "frechet_floor_train_vs_test": gaussian_frechet_distance(features["train"], features["test"]),
               "real_val_salt_and_pepper": salt_and_pepper(data.val_x)}
    print(json.dumps(summary), flush=True)

    vae_names = [] if args.vae == "none" else args.vae.split(",") if args.vae else list(vae_sweep.RECIPES)
    gan_names = args.gan.split(",") if args.gan else list(gan_sweep.RECIPES)
    previous = json.loads(Path(args.previous).read_text()) if args.previous else {"runs": [], "test": {}}
    jobs = []
    for seed in range(args.seeds):
        jobs += [dict(kind="gan", recipe=n, seed=seed) for n in reversed(gan_names)]   # longest first
        jobs += sorted((dict(kind="vae", recipe=n, latent_dim=d, seed=seed) for n in vae_names for d in (2, 20)),
                       key=lambda job: -vae_sweep.cpu_cost(vae_sweep.recipe(job["recipe"])))
    for i, job in enumerate(jobs):
        job["tag"] = f"{i:03d}"
    results = []
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"), initializer=init_worker,
                             initargs=(str(tmp), args.smoke)) as pool:
        futures = {pool.submit(run_job, job): job for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                result = future.result()
            except Exception as error:  # noqa: BLE001 - one failed recipe must not lose the others
                print(f"FAILED {job}: {error!r}", flush=True)
                continue
            results.append(result)
            figure = (f"val ELBO {result['val_elbo_100']:.2f} "
                      f"(best epoch {result['best_epoch']}/{result['epochs_run']})"
                      if result["kind"] == "vae" else
                      f"val FID {result['val_frechet_by_epoch']} classes [{min(result['class_histogram']):.3f}, "
                      f"{max(result['class_histogram']):.3f}] isolated {result['isolated_per_image']:.2f}; last FID "
                      + str({v: round(f["val_frechet_by_epoch"][max(f["val_frechet_by_epoch"])], 2)
                             for v, f in result.get("variants", {}).items()}))
            print(f"{time.perf_counter() - t0:6.0f}s {result['kind']} {result['recipe']} "
                  f"{result.get('latent_dim', '')} seed {result['seed']}: {figure} ({result['seconds']:.0f}s)",
                  flush=True)
            (out / "results.json").write_text(json.dumps({"summary": summary, "runs": results}))
            if time.perf_counter() - t0 > args.deadline:
                cancelled = sum(f.cancel() for f in futures)
                if cancelled:
                    print(f"deadline: {cancelled} jobs not started", flush=True)

    # the winners, chosen on validation only (this call's runs and the earlier call's); then the test split, once,
    # for the winners alone (a winner already measured in the earlier call keeps its figure)
    everything, seeds = previous["runs"] + results, set(range(args.seeds))
    winners = {"vae_2": choose_vae(everything, 2, seeds), "vae_20": choose_vae(everything, 20, seeds),
               "gan": choose_gan(everything, summary["real_val_salt_and_pepper"]["isolated_per_image"], seeds)}
    print("winners on validation:", winners, flush=True)
    old_winners, test, saved = previous.get("winners", {}), {}, {}
    from bench.experiments.models import RegularizedVAE
    for key in ("vae_2", "vae_20"):
        if old_winners.get(key) == winners[key]:
            test[key] = previous["test"][key]
            continue
        runs = [r for r in results if r["kind"] == "vae" and r["recipe"] == winners[key]
                and r["latent_dim"] == int(key.split("_")[1]) and r["seed"] in seeds]
        values = []
        for r in runs:
            payload = torch.load(tmp / f"model_{r['tag']}.pt", weights_only=True)
            model = RegularizedVAE(**payload["config"]).to(device)
            model.load_state_dict(payload["state_dict"])
            values.append({"seed": r["seed"], "test_elbo_100": vae_sweep.final_elbo(model, test_x)})
            if r["seed"] == 0:
                saved[key] = payload
        test[key] = values
    name, variant = winners["gan"]
    if old_winners.get("gan") in ([name, variant], name if variant == "raw" else None):
        test["gan"] = previous["test"]["gan"]
    else:
        test["gan"] = []
        for r in [r for r in results if r["kind"] == "gan" and r["recipe"] == name and r["seed"] in seeds]:
            g_class, g_config = gan_sweep.RECIPES[name][0]
            generator = g_class(**g_config).to(device)
            payload = torch.load(tmp / f"model_{r['tag']}_{variant}.pt", weights_only=True)
            generator.load_state_dict(payload["state_dict"])
            generator.eval()
            epoch = max(int(e) for e in r["val_frechet_by_epoch"])
            fresh = generator.sample(1000, rng=torch.Generator().manual_seed(epoch))
            quality = sample_quality(classifier, fresh, features["test"])
            test["gan"].append({"seed": r["seed"], "test_frechet": quality["frechet"],
                                "class_histogram": quality["class_histogram"], **salt_and_pepper(fresh)})
            if r["seed"] == 0:
                saved["gan"] = payload
    print("test figures of the winners:", json.dumps(test), flush=True)
    (out / "results.json").write_text(json.dumps({"summary": summary, "runs": results, "winners": winners,
                                                  "test": test}))
    torch.save(saved, out / "winners_seed0.pt")
    grids = {f"{r['recipe']} {variant}": torch.load(tmp / f"grid_{r['tag']}_{variant}.pt", weights_only=True)
             for r in sorted(results, key=lambda r: r["tag"]) if r["kind"] == "gan" and r["seed"] == 0
             for variant in r["variants"]}
    if grids:
        montage(grids, out / "gan_grids_epoch90_seed0.png")
    print(f"done in {time.perf_counter() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
