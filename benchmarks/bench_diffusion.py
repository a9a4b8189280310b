"""Diffusion-inpainted defects on MVTec bottle: quality against held-out real defects, and speed.

    python benchmarks/bench_diffusion.py                          # CPU budget (about 20-30 min on 2 cores)
    python benchmarks/bench_diffusion.py --budget gpu --device cuda
    python benchmarks/bench_diffusion.py --model runs/bench_diffusion/cpu/model   # reuse a model, no training

1. **Train** defectgen's inpainting model on a third of each defect type (``--shots``, split by
   ``split_shots(bank, 0.33, seed 0)``, recorded in the model) plus the OK training images, in
   ``runs/bench_diffusion/<budget>/model`` (resumed when it is there), or take ``--model DIR``: a model trained
   on the same split (checked; ``defectgen train inpaint --shots 0.33`` with seed 0 writes one).
2. **Quality.** Every held-out real defect gives ``--variants`` synthetic defects on OK images at the held-out
   defect's place (bottle images are aligned, so a defect's position is meaningful), by three methods --
   ``diffusion`` (the model, conditioned on the held-out defect's type), ``transplant`` (a training defect of
   the same type) and ``cutpaste fill`` (CutPaste's "a patch from elsewhere in the same image": the same OK
   image shifted by a random offset) -- and a ``no defect`` row (the OK pixels in the same masks). Two mask
   protocols, each applied identically to every generated row:
   - ``held_out_masks``: every method fills the held-out real defect's own mask at its own place. Transplant
     does it with :class:`~defectgen.sources.transplant.TransplantSource` (defectgen's transplant *source*,
     usable with any mask once given its geometry): a training defect of the same type, turned by 0 or 90
     degrees (whichever matches the held-out box's aspect better), randomly flipped, centred on the held-out
     mask's box and scaled to cover it; its pixels (brightness-matched on the bottle, as
     ``DefectTransplant(foreground="otsu_dark")`` does) are taken inside the held-out mask and feathered in
     as the diffusion fill is. The outline is the real one for every row: this
     protocol compares fills only.
   - ``own_masks``: every method draws its masks as it would in use, from the *training* defects only, with
     the anchor at the held-out defect's box centre and clipped to the bottle (``foreground: otsu_dark``, as
     ``recipes/diffusion_bottle.yaml``): ``diffusion`` the recipe's masks (transplant shapes of the training
     defects, any flip and angle, scale 0.7-1.3, a shape of the held-out defect's type); ``transplant``
     ``DefectTransplant``'s own (a training defect of the same type with its own outline, scale 0.8-1.25,
     any angle); ``cutpaste fill`` the *diffusion row's* masks (not CutPaste's rectangles: this isolates the
     fill); ``no defect`` the diffusion row's masks too. No row has a real held-out outline.
   A window around each defect (its mask's box grown by half its size on every side, as the model cuts it) is
   resampled to 64 px and embedded by a feature network (below). Reported per row:
   - **KID** (torchmetrics, polynomial kernel, 100 subsets) against the held-out real windows. Reference rows:
     ``real (train third)`` (other real defects with their own masks: what a perfect generator could reach)
     and ``no defect``.
   - **diversity**: mean pairwise feature distance between a row's windows.
   - **copies**: share of defects that are a copy of a training defect *wherever and however it was put*
     (see the copy test below); ``pixels`` and ``features`` are two versions of the test.
3. **Speed**: images/s of ``DiffusionDefect`` (25 steps, guidance 3) on a batch of 256 px OK images with Perlin
   masks, next to ``DefectTransplant`` and ``CutPaste`` on the same batch in the same run; peak memory (CUDA:
   ``max_memory_allocated``; CPU: the process's peak resident size, which includes everything before it).

Every number printed is written to the raw results file (``docs/results/diffusion_bottle_<budget>.json`` unless
``--json``; see ``benchmarks/raw_results.py``) with the command, versions, machine, date, the model's folder,
training time and the training / held-out defect files; :func:`render_tables` turns it into the printed tables.

**Feature pooling** (the same rule for every row of both protocols, the real rows included): per channel, the
mean and std of two ResNet-18 layers over the window's *defect mask* (grown by the max-pool to the feature
maps' resolution, so the defect's edge and blend count). Not over the whole window: a window is mostly
surroundings, which every generated row takes unchanged from the OK images and which for the real rows is the
test images' own glass, so whole-window statistics would mostly compare bottle with bottle and shrink every
difference between fills. The defect mask is the drawn one (the held-out mask, or the mask the method drew,
clipped to the foreground), not the blend's feathered margin. Each dimension is standardised on reference
windows (real defects, and the OK pixels in the held-out masks; never a method's output), once, so both
protocols share one feature space.

Feature networks (nothing may be downloaded here, so the Inception network KID normally uses is out):
- ``random``: random weights (seeded). No bias towards any method, but on bottle it barely tells a real defect
  from no defect, so it only separates gross failures.
- ``cutpaste_ssl``: the CutPaste network trained on the OK training images only (3-way pretext, 100 steps,
  2-4 min on CPU): it never sees a real defect, and its features are made to single out irregular
  patches. It separates ``no defect`` from real defects where the random one does not, at the price of a bias:
  it was taught what cut-and-paste and scar artefacts look like. Its training is deterministic at a given
  torch thread count but not across counts (the published run used 1 thread: ``OMP_NUM_THREADS=1``).
KID's unbiased estimator goes negative when two sets are closer than independent samples would be; compare
rows, not signs.

**Copy test** (placement-invariant). Each defect is cut out by its mask's tight box, resampled to
``--copy-size`` px square (scale, aspect and shift normalised), its colours shifted to zero mean over the mask
per channel (transplant re-lights what it pastes); every training defect is cut the same way after each of
``2 x --copy-angles`` flips and rotations about its centre (every 10 degrees by default, the 8 flips / quarter
turns among them). The distance between two such crops is, over the union of their masks, the norm of their
difference divided by the sum of their norms (0: identical; about 0.7: unrelated; relative, so a faint defect
is not a "copy" of plain glass because both are faint), the smallest over the orientations; a defect's
distance to the training set is the smallest over training defects. The ``features`` version compares instead
the cutpaste_ssl features of the defect's window with those of every turned training window (Euclidean). A
defect is a copy when its distance is below the threshold: the 5th percentile of the held-out real defects'
own distances to the training set, so genuinely new real defects score 5 % by construction and a method that
reuses training defects, however moved, turned, rescaled or re-lit, scores more. ``transplant`` in
``own_masks`` is such a method by construction: its row shows how much of real copying the test catches (on
bottle the pixel version flags about 80 % of them, the features version no more than new real defects: read the
pixel version).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from raw_results import RESULTS, command_line, markdown_table, write_raw  # noqa: E402

from defectgen import CutPaste, DefectBank, DefectTransplant, DiffusionDefect, InpaintModel, RegionDefect  # noqa: E402
from defectgen.checks import resolve_device  # noqa: E402
from defectgen.foreground import estimate_foreground  # noqa: E402
from defectgen.io.images import load_folder  # noqa: E402
from defectgen.io.mvtec import load_image, load_mask, read_mvtec  # noqa: E402
from defectgen.masks.base import RegionMask  # noqa: E402
from defectgen.components import mask_boxes  # noqa: E402
from defectgen.masks.transplant import TransplantMask  # noqa: E402
from defectgen.sources.base import Source  # noqa: E402
from defectgen.sources.diffusion.crops import crop, square_boxes  # noqa: E402
from defectgen.sources.diffusion.train import InpaintTraining, split_shots, subset_bank, train_inpaint  # noqa: E402
from defectgen.sources.transplant import TransplantSource  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mvtec_bottle_256"
BUDGETS = {
    # 32 px windows, a small UNet (1.2 M parameters), 3000 steps of 16 windows: about 13 min of training on 2 cores
    "cpu": InpaintTraining(resolution=32, width=32, layers_per_block=1, steps=3000, batch_size=16,
                           learning_rate=5e-4),
    # 64 px windows, the default UNet (width 64, two layers per level), 20000 steps of 32 windows
    "gpu": InpaintTraining(resolution=64, width=64, layers_per_block=2, steps=20000, batch_size=32,
                           learning_rate=2e-4),
}
WINDOW_PX = 64
CONTEXT = 0.5
FOREGROUND = "otsu_dark"            # recipes/diffusion_bottle.yaml's: the bottle, not the white background
RECIPE_SCALE_RANGE = (0.7, 1.3)     # recipes/diffusion_bottle.yaml's transplant-mask scale
PROTOCOLS = ("held_out_masks", "own_masks")
METHODS = ("diffusion", "transplant", "cutpaste fill")
ROW_ORDER = ("real (train third)", "no defect", "diffusion", "transplant", "cutpaste fill", "real (held out)")
NETWORKS = ("random", "cutpaste_ssl")


class GivenMasks(RegionMask):
    """Sample ``i`` of the batch gets mask ``i`` of a fixed stack (the held-out real masks, in order)."""

    instances = "one"

    def __init__(self, masks: torch.Tensor):
        self.masks = masks.float()

    def sample(self, n, height, width, generator):
        return {"given_index": torch.arange(n)}

    def draw(self, params, height, width, device):
        return self.masks[params["given_index"]].to(device)


class ShiftedSelf(Source):
    """CutPaste's fill without its rectangle: the same image, shifted by a random offset (wrapping round)."""

    def sample(self, n, channels, height, width, shape, generator):
        return {"shift": torch.randint(height // 8, height - height // 8, (n, 2), generator=generator)}

    def render_region(self, images, params, coverage):
        rows = (torch.arange(images.shape[-2]).view(1, -1) + params["shift"][:, :1]) % images.shape[-2]
        cols = (torch.arange(images.shape[-1]).view(1, -1) + params["shift"][:, 1:]) % images.shape[-1]
        index = torch.arange(len(images)).view(-1, 1, 1)
        return images.float().permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


class Features(torch.nn.Module):
    """A ResNet-18 (torchvision layout) to layer 3; per channel, the mean and std of layers 2 and 3 over the
    defect's mask; :meth:`standardise` fixes a per-dimension scale from reference windows.

    ``encoder=None`` gives random weights (seeded); otherwise the given ResNet-18 (e.g. the CutPaste network's)."""

    def __init__(self, seed: int = 0, encoder: Optional[torch.nn.Module] = None):
        super().__init__()
        import torchvision

        if encoder is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                encoder = torchvision.models.resnet18(weights=None)
        net = encoder
        self.body = torch.nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2,
                                        net.layer3).eval()
        self.mean = self.scale = None
        self.register_buffer("pixel_mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    @torch.no_grad()
    def raw(self, windows: torch.Tensor) -> torch.Tensor:
        """``windows`` ``(N, C + 1, 64, 64)``: the image window and its mask as the last channel."""
        images, masks = windows[:, :-1], windows[:, -1:]
        x = (images.float() - self.pixel_mean) / self.pixel_std  # as the CutPaste network was trained
        x = F.interpolate(x, size=128, mode="bilinear", align_corners=False)
        pooled = []
        for part, mask in zip(x.split(64), masks.split(64)):
            mid = self.body[:6](part)
            deep = self.body[6](mid)
            stats = []
            for maps in (mid, deep):
                # the defect's own statistics: pooled over the (slightly grown) mask only, not the whole window
                weight = F.adaptive_max_pool2d(mask.float(), maps.shape[-2:])
                weight = weight / weight.sum((2, 3), keepdim=True).clamp_min(1.0)
                mean = (maps * weight).sum((2, 3))
                variance = ((maps - mean[..., None, None]) ** 2 * weight).sum((2, 3))
                stats += [mean, variance.clamp_min(0).sqrt()]
            pooled.append(torch.cat(stats, 1))
        return torch.cat(pooled) if pooled else torch.zeros(0, 2 * (128 + 256))

    def standardise(self, reference: torch.Tensor) -> None:
        """Zero mean, unit variance per dimension over ``reference`` windows (real defects and OK windows, never
        a method's output), so KID's kernel ``(x.y / d + 1)^3`` sees every dimension on one scale."""
        features = self.raw(reference)
        # dimensions nearly constant on the references (dead channels) would blow up: floor the scale
        spread = features.std(0)
        self.mean, self.scale = features.mean(0), spread + 0.1 * spread.median() + 1e-6

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (self.raw(images) - self.mean) / self.scale


def windows_of(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``(N, C + 1, 64, 64)`` windows around each image's mask (the model's window shape, at 64 px): the pixels
    in [0, 1] and, as the last channel, the mask (the features pool over it)."""
    boxes, _ = mask_boxes(masks.bool())
    squares = square_boxes(boxes.float(), CONTEXT, 16.0)
    pixels = crop(images.float() / 255.0, squares, WINDOW_PX).clamp(0, 1)
    return torch.cat([pixels, (crop(masks.float(), squares, WINDOW_PX) > 0).float()], 1)


def kid(real: torch.Tensor, fake: torch.Tensor, seed: int = 0) -> Dict[str, Optional[float]]:
    from torchmetrics.image.kid import KernelInceptionDistance

    if min(len(real), len(fake)) < 2:
        return {"kid": None, "kid_std": None}
    metric = KernelInceptionDistance(feature=torch.nn.Identity(), subsets=100,
                                     subset_size=min(len(real), len(fake), 40))
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return {"kid": float(mean), "kid_std": float(std)}


def diversity(features: torch.Tensor) -> Optional[float]:
    n = len(features)
    if n < 2:
        return None
    return float(torch.cdist(features, features).sum() / (n * (n - 1)))


# -- the placement-invariant copy test ---------------------------------------------------------------------------
def defect_crops(images: torch.Tensor, masks: torch.Tensor, size: int) -> torch.Tensor:
    """``(N, C + 1, size, size)``: each defect's tight mask box resampled to a square (scale, aspect and shift
    normalised), pixels in [0, 1] shifted to zero mean over the mask per channel, and the mask (soft, 0..1)."""
    boxes, _ = mask_boxes(masks.float() > 0.5)
    pixels = crop(images.float() / 255.0, boxes, size)
    coverage = crop(masks.float(), boxes, size).clamp(0, 1)
    mean = (pixels * coverage).sum((2, 3), keepdim=True) / coverage.sum((2, 3), keepdim=True).clamp_min(1e-6)
    return torch.cat([pixels - mean, coverage], 1)


def turned(images: torch.Tensor, masks: torch.Tensor, angle_deg: float, flip: bool) -> Tuple[torch.Tensor,
                                                                                             torch.Tensor]:
    """The images and masks flipped (horizontally, if ``flip``) then rotated by ``angle_deg`` about each mask's
    box centre: ``(N, C, H, W)`` float 0..255 and ``(N, 1, H, W)`` bool."""
    n, _, height, width = images.shape
    boxes, _ = mask_boxes(masks.bool())
    # box centres in grid_sample's normalised coordinates (align_corners=False)
    cx = (boxes[:, 0] + boxes[:, 2]) / width - 1
    cy = (boxes[:, 1] + boxes[:, 3]) / height - 1
    angle = math.radians(angle_deg)
    cos, sin, sign = math.cos(angle), math.sin(angle), (-1.0 if flip else 1.0)
    # output point p reads the input at c + F R (p - c); in pixel units, so scale x and y by the aspect
    a = torch.tensor([[sign * cos, -sign * sin * height / width], [sin * width / height, cos]])
    theta = torch.zeros(n, 2, 3)
    theta[:, :, :2] = a
    centre = torch.stack([cx, cy], 1)
    theta[:, :, 2] = centre - centre @ a.T
    grid = F.affine_grid(theta, [n, 1, height, width], align_corners=False)
    pixels = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    coverage = F.grid_sample(masks.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return pixels, coverage > 0.5


def training_variants(images: torch.Tensor, masks: torch.Tensor, angles: int, size: int):
    """Every training defect under ``2 x angles`` flips and rotations (the 8 flips / quarter turns among them
    when ``angles`` is a multiple of 4): ``(crops (V*T, C+1, size, size), windows (V*T, C+1, 64, 64))``."""
    crops, windows = [], []
    for flip in (False, True):
        for k in range(angles):
            pixels, coverage = turned(images, masks, 360.0 * k / angles, flip)
            keep = coverage.flatten(1).any(1)
            crops.append(defect_crops(pixels[keep], coverage[keep], size))
            windows.append(windows_of(pixels[keep], coverage[keep]))
    return torch.cat(crops), torch.cat(windows)


def aligned_distance(crops: torch.Tensor, reference: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """``(N,)`` smallest distance of each crop to the reference crops (both from :func:`defect_crops`): over the
    union of the two masks, the norm of the difference divided by the sum of the two crops' norms. 0 is an exact
    copy, about 0.7 two unrelated patterns; relative, so that a faint defect is not a copy of plain glass (or of
    another faint defect) just because both are faint."""
    best = torch.full((len(crops),), float("inf"))
    if len(crops) == 0:
        return best
    a, ma = crops[:, None, :-1], crops[:, None, -1]
    for part in reference.split(chunk):
        b, mb = part[None, :, :-1], part[None, :, -1]
        union = torch.maximum(ma, mb)
        difference = (union * ((a - b) ** 2).sum(2)).sum((2, 3)).sqrt()
        size = (union * (a ** 2).sum(2)).sum((2, 3)).sqrt() + (union * (b ** 2).sum(2)).sum((2, 3)).sqrt()
        best = torch.minimum(best, (difference / size.clamp_min(1e-6)).amin(1))
    return best


def nearest(features: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    if len(features) == 0:
        return torch.zeros(0)
    return torch.cdist(features, reference).amin(1)


# -- the benchmark --------------------------------------------------------------------------------------------------
def feature_networks(args, device: str) -> Tuple[Dict[str, Optional[torch.nn.Module]], float]:
    """``random``: untrained ResNet-18; ``cutpaste_ssl``: the CutPaste network trained (3-way pretext, 100 steps
    of 16 images at 128 px, the bottle ablation's CPU budget) on the OK training images only: no defect image
    is seen, but its features are made to tell irregular patches from normal bottle."""
    from detectors.cutpaste import CutPasteDetector

    ok = load_folder(args.data / "train" / "good", size=128)
    start = time.perf_counter()
    detector = CutPasteDetector(pretext="3way", image_size=128, head_layers=[512, 128], batch_size=16,
                                seed=args.seed)
    detector.fit(ok, steps=args.feature_steps, device=device, progress=False)
    seconds = time.perf_counter() - start
    print(f"feature network cutpaste_ssl trained in {seconds:.0f} s", flush=True)
    return {"random": None, "cutpaste_ssl": detector.network.encoder.cpu().eval()}, seconds


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MVTec-layout category folder")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    parser.add_argument("--out", type=Path, help="run folder: model/ and samples.png (default: "
                                                 "runs/bench_diffusion/<budget> in the repository)")
    parser.add_argument("--model", type=Path, help="evaluate this model folder instead of training one (it must "
                                                   "have been trained on split_shots(bank, --shots, --seed))")
    parser.add_argument("--shots", type=float, default=0.33, help="share of each defect type to train on")
    parser.add_argument("--steps", type=int, help="training steps (default: the budget's)")
    parser.add_argument("--variants", type=int, default=3, help="synthetic defects per held-out real defect")
    parser.add_argument("--sampling-steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--feature-steps", type=int, default=100, help="training steps of the CutPaste features")
    parser.add_argument("--copy-angles", type=int, default=36,
                        help="rotations per flip in the copy test (36: every 10 degrees; a multiple of 4 "
                             "includes the quarter turns)")
    parser.add_argument("--copy-size", type=int, default=32, help="side of the copy test's defect crops")
    parser.add_argument("--speed-batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    parser.add_argument("--json", type=Path, help="raw results file (default: "
                                                  "docs/results/diffusion_bottle_<budget>.json)")
    return parser.parse_args(argv)


def read_defects(data: Path, names: List[str]):
    """The real NG images and full masks of the named defect images (bank entry names are image paths)."""
    layout = read_mvtec(data, require_test=True)
    # by type folder and file name: the recorded paths may spell the data folder differently
    by_name = {Path(item.image).parts[-2:]: item for item in layout.test if item.defect != "good"}
    items = [by_name[Path(name).parts[-2:]] for name in names]
    images = torch.stack([load_image(item) for item in items])
    masks = torch.stack([load_mask(item) for item in items]).bool()
    return images, masks, [item.defect for item in items]


def shown(path: Path) -> str:
    """A path as recorded: relative to the repository when it is inside it."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def short_name(name: str) -> str:
    """``test/<type>/<file>``: a defect file as the data folder names it, wherever that folder is."""
    return "/".join(("test",) + Path(name).parts[-2:])


def train_or_load(args, device: str, bank: DefectBank) -> Tuple[InpaintModel, Dict[str, Any]]:
    """The model and what to record about it: folder, whether it was trained here, training time, split."""
    train, held_out = split_shots(bank, args.shots, args.seed)
    expected = ([short_name(bank.names[i]) for i in train], [short_name(bank.names[i]) for i in held_out])
    record: Dict[str, Any] = {}
    if args.model is not None:
        model = InpaintModel.load(args.model, device)
        record.update(folder=shown(args.model), trained_this_run=False)
    else:
        settings = BUDGETS[args.budget]
        if args.steps is not None:
            settings = dataclasses.replace(settings, steps=args.steps)
        settings = dataclasses.replace(settings, seed=args.seed)
        full = DefectBank.from_mvtec(args.data, margin_px=256)  # training windows take context around a defect
        ok = load_folder(args.data / "train" / "good", size=256)
        # data_root: the study's overlap check resolves the recorded names from it, wherever it runs
        info = {"data": str(args.data), "data_root": str(args.data.resolve()), "shots": args.shots,
                "train_defects": [full.names[i] for i in train],
                "held_out_defects": [full.names[i] for i in held_out]}
        folder = args.out / "model"
        resumed = (folder / "checkpoint.pt").is_file()
        start = time.perf_counter()
        model = train_inpaint(folder, ok, subset_bank(full, train), settings, device=device, info=info,
                              checkpoint_every=250)
        seconds = time.perf_counter() - start
        print(f"trained {model.info['steps_done']} steps ({seconds:.0f} s this run"
              f"{', resumed from a checkpoint' if resumed else ''}), final loss {model.info['final_loss']:.4f}",
              flush=True)
        record.update(folder=shown(folder), trained_this_run=True, resumed_from_checkpoint=resumed,
                      training_seconds_this_run=seconds)
    found = tuple([short_name(n) for n in model.info.get(key, [])] for key in ("train_defects", "held_out_defects"))
    if found != expected:
        raise SystemExit(f"bench_diffusion: the model in {record['folder']} was not trained on "
                         f"split_shots(bank, {args.shots}, seed {args.seed}) of {args.data} (its recorded "
                         "train_defects / held_out_defects differ); train one with the default command or "
                         f"`defectgen train inpaint --shots {args.shots} --seed {args.seed}`")
    record.update(steps_done=model.info.get("steps_done"), final_loss=model.info.get("final_loss"),
                  training=model.info.get("training"), train_defects=expected[0], held_out_defects=expected[1])
    return model, record


def same_type_entries(bank: DefectBank, types: List[str], generator: torch.Generator) -> torch.Tensor:
    """``(N,)`` a random entry of ``bank`` of each given type."""
    per_type = {name: (bank.types == i + 1).nonzero().flatten() for i, name in enumerate(bank.class_names)}
    return torch.stack([per_type[t][torch.randint(len(per_type[t]), (1,), generator=generator)][0] for t in types])


def box_centres(masks: torch.Tensor) -> torch.Tensor:
    """``(N, 2)`` ``(row, col)`` centres of the masks' boxes, in pixel edges (as bank anchors are)."""
    boxes, _ = mask_boxes(masks.bool())
    return torch.stack([(boxes[:, 1] + boxes[:, 3]) / 2, (boxes[:, 0] + boxes[:, 2]) / 2], 1)


def transplant_into(masks: torch.Tensor, types: List[str], bank: DefectBank,
                    generator: torch.Generator) -> Dict[str, torch.Tensor]:
    """TransplantSource geometry putting a training defect of each type into each given mask: turned by 0 or
    90 degrees (whichever matches the mask box's aspect better), flipped at random, centred on the mask's box
    and scaled so that the training defect's box covers it."""
    index = same_type_entries(bank, types, generator)
    flip = torch.rand(len(index), 2, generator=generator) < 0.5
    target, _ = mask_boxes(masks.bool())
    source, _ = mask_boxes(bank.masks.bool())
    source = source[index]
    th, tw = target[:, 3] - target[:, 1], target[:, 2] - target[:, 0]
    sh, sw = source[:, 3] - source[:, 1], source[:, 2] - source[:, 0]
    aspect = torch.log(th / tw)
    quarter = (aspect - torch.log(sw / sh)).abs() < (aspect - torch.log(sh / sw)).abs()
    sh, sw = torch.where(quarter, sw, sh), torch.where(quarter, sh, sw)
    scale = torch.maximum(th / sh, tw / sw)
    return {"bank_index": index, "flip": flip, "angle_deg": torch.where(quarter, 90.0, 0.0), "scale": scale,
            "centre": box_centres(masks)}


class FittedTransplant(TransplantSource):
    """defectgen's transplant source, its geometry fitted to given masks (see :func:`transplant_into`): sample
    ``i`` gets a training defect of ``types[i]`` brought into ``masks[i]`` (with :class:`GivenMasks`).

    ``foreground`` (``(N, 1, H, W)`` bool, per given mask) is where the destination's brightness is measured, as
    ``DefectTransplant(..., foreground=...)`` measures it, without clipping the given mask to it."""

    def __init__(self, bank: DefectBank, masks: torch.Tensor, types: List[str],
                 foreground: Optional[torch.Tensor] = None):
        super().__init__(bank)
        self.given_masks, self.given_types, self.given_foreground = masks, types, foreground

    def render_region(self, images, params, coverage):
        if self.given_foreground is not None:
            params = {**params, "foreground": self.given_foreground[params["given_index"]].to(images.device)}
        return super().render_region(images, params, coverage)

    def sample(self, n, channels, height, width, shape, generator):
        if n == 0:  # the empty draw replay checks compare with
            return {"bank_index": torch.zeros(0, dtype=torch.long), "flip": torch.zeros(0, 2, dtype=torch.bool),
                    "angle_deg": torch.zeros(0), "scale": torch.zeros(0), "centre": torch.zeros(0, 2)}
        index = shape["given_index"].tolist()
        return transplant_into(self.given_masks[index], [self.given_types[i] for i in index], self.defect_bank,
                               generator)


def retarget(params: Dict[str, torch.Tensor], index: torch.Tensor, bank: DefectBank, height: int,
             width: int) -> Dict[str, torch.Tensor]:
    """A TransplantMask draw with its entries replaced by ``index``: the drawn scale keeps its random part and
    takes the new entries' image-size factor (``scale_with_image``)."""
    def factor(entries):
        source = bank.source_sizes[entries].float()
        return torch.minimum(height / source[:, 0], width / source[:, 1])

    return {**params, "bank_index": index, "scale": params["scale"] / factor(params["bank_index"]) * factor(index)}


def drawn(op: RegionDefect, params: Dict[str, torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """The defect mask an op drew for ``params`` (clipped to the foreground as its paint clips it): the mask the
    features pool over, without the blend's feathered margin."""
    coverage = op.mask.draw(params, images.shape[-2], images.shape[-1], images.device) > 0
    if "foreground" in params:
        coverage = coverage & params["foreground"]
    return coverage & params["applied"].view(-1, 1, 1, 1)


def held_out_masks(args, model, setup, train_bank, device) -> Dict[str, Tuple[torch.Tensor, torch.Tensor]]:
    """Every method fills the held-out real masks at their own places: ``{row: (images, defect masks)}``."""
    base, masks, types = setup["base"], setup["masks"], setup["types"]
    generator = torch.Generator().manual_seed(args.seed)
    rows = {}
    diffusion = DiffusionDefect(model, mask=GivenMasks(masks), steps=args.sampling_steps, guidance=args.guidance)
    params = diffusion.sample_params(len(base), 3, base.shape[-2], base.shape[-1], generator)
    params["diffusion_class"] = torch.tensor([diffusion.class_names.index(t) for t in types])
    start = time.perf_counter()
    out = diffusion(base.to(device), params={k: v.to(device) for k, v in params.items()})
    setup["timings"]["diffusion_held_out_masks_s"] = time.perf_counter() - start
    print(f"held_out_masks: {len(base)} diffusion defects in {time.perf_counter() - start:.1f} s", flush=True)
    rows["diffusion"] = out.image.cpu()

    # brightness matched on the bottle, as DefectTransplant(foreground="otsu_dark") does; the mask is not clipped
    source = FittedTransplant(train_bank, masks, types, estimate_foreground(base, FOREGROUND))
    transplant = RegionDefect(mask=GivenMasks(masks), source=source, blend="feather")
    rows["transplant"] = transplant(base, generator=generator).image

    cutpaste = RegionDefect(mask=GivenMasks(masks), source=ShiftedSelf(), blend="replace")
    rows["cutpaste fill"] = cutpaste(base, generator=generator).image
    rows["no defect"] = base
    return {name: (images, masks) for name, images in rows.items()}


def own_masks(args, model, setup, train_bank, device) -> Dict[str, Tuple[torch.Tensor, torch.Tensor]]:
    """Every method draws its own masks from the training defects, anchored at the held-out defects' box
    centres and clipped to the bottle: ``{row: (images, defect masks)}``."""
    base, types = setup["base"], setup["types"]
    centres = box_centres(setup["masks"])
    foreground = estimate_foreground(base, FOREGROUND)
    generator = torch.Generator().manual_seed(args.seed + 1)
    h, w = base.shape[-2:]
    rows = {}

    shapes = TransplantMask(train_bank, scale_range=RECIPE_SCALE_RANGE)  # recipes/diffusion_bottle.yaml's masks
    diffusion = DiffusionDefect(model, mask=shapes, steps=args.sampling_steps, guidance=args.guidance,
                                blend="feather")
    params = diffusion.sample_params(len(base), 3, h, w, generator)
    params = retarget(params, same_type_entries(train_bank, types, generator), train_bank, h, w)
    params.update(centre=centres, foreground=foreground)
    params["diffusion_class"] = torch.tensor([diffusion.class_names.index(t) for t in types])
    start = time.perf_counter()
    out = diffusion(base.to(device), params={k: v.to(device) for k, v in params.items()})
    setup["timings"]["diffusion_own_masks_s"] = time.perf_counter() - start
    print(f"own_masks: {len(base)} diffusion defects in {time.perf_counter() - start:.1f} s", flush=True)
    diffusion_masks = drawn(diffusion, params, base)
    rows["diffusion"] = (out.image.cpu(), diffusion_masks)

    transplant = DefectTransplant(train_bank)
    tparams = transplant.sample_params(len(base), 3, h, w, generator)
    tparams = retarget(tparams, same_type_entries(train_bank, types, generator), train_bank, h, w)
    tparams.update(centre=centres, foreground=foreground)
    rows["transplant"] = (transplant(base, params=tparams).image, drawn(transplant, tparams, base))

    cutpaste = RegionDefect(mask=shapes, source=ShiftedSelf(), blend="replace")
    cparams = {key: params[key] for key in ("applied", "bank_index", "flip", "angle_deg", "scale", "centre",
                                            "foreground")}
    cparams.update(ShiftedSelf().sample(len(base), 3, h, w, {}, generator))
    rows["cutpaste fill"] = (cutpaste(base, params=cparams).image, drawn(cutpaste, cparams, base))
    rows["no defect"] = (base, diffusion_masks)
    return rows


def quality(args, model: InpaintModel, bank: DefectBank, record: Dict[str, Any], device: str,
            timings: Dict[str, float]) -> Dict[str, Any]:
    train_names, held_names = record["train_defects"], record["held_out_defects"]
    real, real_masks, real_types = read_defects(args.data, held_names)
    train_images, train_masks, _ = read_defects(args.data, train_names)
    ok = load_folder(args.data / "train" / "good", size=real.shape[-1])
    k, n = args.variants, len(real)
    chosen = torch.arange(n * k) * 7 % len(ok)  # OK images spread over the set
    setup = {"base": ok[chosen], "masks": real_masks.repeat_interleave(k, 0),
             "types": [t for t in real_types for _ in range(k)], "timings": timings}
    entries = {Path(name).parts[-2:]: i for i, name in enumerate(bank.names)}
    train_bank = subset_bank(bank, [entries[Path(name).parts[-2:]] for name in train_names])

    protocols = {"held_out_masks": held_out_masks(args, model, setup, train_bank, device),
                 "own_masks": own_masks(args, model, setup, train_bank, device)}

    real_windows = windows_of(real, real_masks)
    train_windows = windows_of(train_images, train_masks)
    start = time.perf_counter()
    variant_crops, variant_windows = training_variants(train_images, train_masks, args.copy_angles, args.copy_size)
    real_crops = defect_crops(real, real_masks, args.copy_size)
    real_copy_distance = aligned_distance(real_crops, variant_crops)
    copy_thresholds = {"pixels": float(torch.quantile(real_copy_distance, 0.05))}
    candidates, valid, crops = {}, {}, {}
    for protocol, rows in protocols.items():
        for name, (images, masks) in rows.items():
            keep = masks.flatten(1).any(1)  # a defect clipped away entirely by the foreground has no window
            valid[protocol, name] = keep
            candidates[protocol, name] = windows_of(images, masks)
            crops[protocol, name] = defect_crops(images[keep], masks[keep], args.copy_size)
    pixel_copies = {key: aligned_distance(value, variant_crops) for key, value in crops.items()}
    timings["copy_test_pixels_s"] = time.perf_counter() - start

    networks, timings["feature_network_s"] = feature_networks(args, device)
    results: Dict[str, Any] = {protocol: {} for protocol in PROTOCOLS}
    for protocol in PROTOCOLS:
        table = results[protocol]
        table["real (train third)"] = {"count": len(train_windows), "copies_pixels": None, "copies_features": None}
        for name in ("no defect",) + METHODS:
            keep = valid[protocol, name]
            table[name] = {"count": int(keep.sum()), "dropped_off_foreground": int((~keep).sum()),
                           "copies_pixels": float((pixel_copies[protocol, name] < copy_thresholds["pixels"])
                                                  .float().mean()) if keep.any() else None}
        table["real (held out)"] = {"count": n, "copies_pixels": float((real_copy_distance < copy_thresholds["pixels"])
                                                                       .float().mean())}
    for net_name, encoder in networks.items():
        features = Features(args.seed, encoder)
        features.standardise(torch.cat([real_windows, train_windows,
                                         windows_of(setup["base"], setup["masks"])]))
        real_features = features(real_windows)
        train_features = features(train_windows)
        variant_features = features(variant_windows) if net_name == "cutpaste_ssl" else None
        if variant_features is not None:
            real_nearest = nearest(real_features, variant_features)
            copy_thresholds["features"] = float(torch.quantile(real_nearest, 0.05))
        for protocol in PROTOCOLS:
            table = results[protocol]
            rows = {"real (train third)": train_features}
            rows.update({name: features(candidates[protocol, name][valid[protocol, name]])
                         for name in ("no defect",) + METHODS})
            for name, feats in rows.items():
                score = kid(real_features, feats, args.seed)
                table[name].update({f"kid_{net_name}": score["kid"], f"kid_std_{net_name}": score["kid_std"],
                                    f"diversity_{net_name}": diversity(feats)})
                if variant_features is not None and name != "real (train third)":
                    table[name]["copies_features"] = float(
                        (nearest(feats, variant_features) < copy_thresholds["features"]).float().mean()) \
                        if len(feats) else None
            table["real (held out)"][f"diversity_{net_name}"] = diversity(real_features)
            if variant_features is not None:
                table["real (held out)"]["copies_features"] = float(
                    (real_nearest < copy_thresholds["features"]).float().mean())
    samples = args.out / "samples.png"
    save_grid(samples, real_windows, candidates, valid, k)
    return {"protocols": results, "copy_thresholds": copy_thresholds, "samples": shown(samples),
            "counts": {"held_out": n, "train": len(train_windows), "variants": k,
                       "training_variants": len(variant_crops)}}


GRID_ROWS = [("held_out_masks", name) for name in ("diffusion", "transplant", "cutpaste fill", "no defect")] + \
    [("own_masks", name) for name in ("diffusion", "transplant", "cutpaste fill", "no defect")]


def save_grid(path: Path, real_windows, candidates, valid, k):
    """Rows: held-out real, then each protocol's rows; columns: the first variant of 16 held-out defects spread
    over the set (so over the defect types, which are in order)."""
    import torchvision

    count = min(16, len(real_windows))
    columns = torch.linspace(0, len(real_windows) - 1, count).round().long()
    rows = [real_windows[columns, :-1]]
    for key in GRID_ROWS:
        windows = candidates[key][columns * k, :-1]
        rows.append(torch.where(valid[key][columns * k].view(-1, 1, 1, 1), windows, 1.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    torchvision.utils.save_image(torch.cat(rows), path, nrow=count, padding=2, pad_value=1.0)
    print(f"samples: {path} (rows: held-out real; held_out_masks: diffusion, transplant, cutpaste fill, no "
          "defect; own_masks: the same four)")


def speed(args, model: InpaintModel, bank: DefectBank, device: str) -> Dict[str, Dict[str, float]]:
    ok = load_folder(args.data / "train" / "good", size=256, limit=args.speed_batch).to(device)
    ops = {"diffusion": DiffusionDefect(model, mask="perlin", steps=args.sampling_steps, guidance=args.guidance,
                                        p=1.0),
           "transplant": DefectTransplant(bank), "cutpaste": CutPaste()}
    results = {}
    for name, op in ops.items():
        op(ok[:2], seed=0)  # warm-up
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        times = []
        for repeat in range(2 if name == "diffusion" else 5):
            start = time.perf_counter()
            out = op(ok, seed=repeat)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        seconds = min(times)
        row = {"images_per_s": len(ok) / seconds, "seconds": seconds, "batch": len(ok),
               "defective": int((out.label > 0).sum())}
        if device.startswith("cuda"):
            row["peak_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
        else:
            row["process_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        results[name] = row
    for name in results:
        results[name]["time_vs_transplant"] = results[name]["seconds"] / results["transplant"]["seconds"]
    return results


# -- tables ---------------------------------------------------------------------------------------------------------
def _kid(row: Dict[str, Any], net: str) -> str:
    value = row.get(f"kid_{net}")
    return "-" if value is None else f"{1000 * value:.1f} ± {1000 * row[f'kid_std_{net}']:.1f}"


def _share(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _number(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.2f}"


def render_tables(raw: Dict[str, Any]) -> Dict[str, str]:
    """The Markdown tables of a raw results file, by name: ``held_out_masks``, ``own_masks`` (quality, one per
    mask protocol) and ``speed`` (when the run got that far). The script prints exactly these."""
    results = raw["results"]
    tables = {}
    for protocol in PROTOCOLS:
        rows = results.get("quality", {}).get("protocols", {}).get(protocol)
        if rows is None:
            continue
        body = []
        for name in ROW_ORDER:
            row = rows[name]
            count = f"{row['count']}" + (f" ({row['dropped_off_foreground']} off the bottle)"
                                         if row.get("dropped_off_foreground") else "")
            kids = ["(reference)"] * 2 if name == "real (held out)" else [_kid(row, net) for net in NETWORKS]
            body.append([name, count, *kids,
                         _number(row.get("diversity_cutpaste_ssl")), _share(row.get("copies_pixels")),
                         _share(row.get("copies_features"))])
        tables[protocol] = markdown_table(["windows", "count", "KID ×1000, random features",
                                           "KID ×1000, CutPaste features", "diversity", "copies (pixels)",
                                           "copies (features)"], body)
    protocols = results.get("quality", {}).get("protocols", {})
    if all(protocol in protocols for protocol in PROTOCOLS):  # the README's excerpt: both protocols side by side
        body = []
        for name in ROW_ORDER[:-1]:
            cells = [_kid(protocols[protocol][name], "cutpaste_ssl") for protocol in PROTOCOLS]
            copies = [_share(protocols[protocol][name].get("copies_pixels")) for protocol in PROTOCOLS]
            body.append([name, *cells, *copies])
        tables["readme"] = markdown_table(
            ["windows", "KID ×1000, held-out masks", "KID ×1000, own masks", "copies, held-out masks",
             "copies, own masks"], body)
    if "speed" in results:
        names = {"diffusion": "DiffusionDefect", "transplant": "DefectTransplant", "cutpaste": "CutPaste"}
        body = []
        for name, row in results["speed"].items():
            memory = row.get("peak_mib", row.get("process_peak_rss_mib"))
            body.append([names.get(name, name), f"{row['images_per_s']:.2f}", f"{row['time_vs_transplant']:.1f}x",
                         f"{memory:.0f}"])
        memory = "peak memory (MiB)" if "peak_mib" in next(iter(results["speed"].values())) else \
            "process peak RSS (MiB)"
        tables["speed"] = markdown_table(["op", "images/s", "time vs DefectTransplant", memory], body)
    return tables


def main(argv: Optional[List[str]] = None) -> Dict:
    args = parse_args(argv)
    command = command_line(__file__, argv)
    device = str(resolve_device(args.device))
    if args.out is None:
        args.out = ROOT / "runs" / "bench_diffusion" / args.budget
    if args.json is None:
        args.json = RESULTS / f"diffusion_bottle_{args.budget}.json"
    args.out.mkdir(parents=True, exist_ok=True)
    if not (args.out / ".gitignore").exists():  # a run folder: models and grids, never committed
        (args.out / ".gitignore").write_text("*\n")
    print(f"bench_diffusion: budget {args.budget}, device {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.machine()}", flush=True)
    start = time.perf_counter()
    # every real defect (transplant takes the training part), its background measured on the bottle as
    # DefectTransplant(bank_folder, foreground="otsu_dark") would measure it
    bank = DefectBank.from_mvtec(args.data, margin_px=8, foreground=FOREGROUND)
    model, record = train_or_load(args, device, bank)
    record["parameters"] = sum(p.numel() for p in model.unet.parameters())
    record["config"] = model.config()
    print(f"model folder: {record['folder']} (reuse: --model {record['folder']})", flush=True)
    print(f"model: {model.config()} ({record['parameters'] / 1e6:.2f} M parameters)", flush=True)
    timings: Dict[str, float] = {}
    settings = {key: (shown(value) if isinstance(value, Path) else value) for key, value in vars(args).items()}
    results: Dict[str, Any] = {"budget": args.budget, "device": device, "settings": settings, "model": record,
                               "timings": timings}
    results["quality"] = quality(args, model, bank, record, device, timings)
    write_raw(args.json, "bench_diffusion", command, results)
    tables = render_tables({"results": results})
    thresholds = results["quality"]["copy_thresholds"]
    counts = results["quality"]["counts"]
    print(f"\nquality on {counts['held_out']} held-out real defects ({counts['variants']} per defect per row); KID "
          "x 1000 (± std over subsets) against them; diversity in CutPaste features; copies: share closer to a "
          f"training defect (any of {counts['training_variants']} flips / rotations) than 95 % of held-out real "
          f"defects are (thresholds: pixels {thresholds['pixels']:.4f}, features {thresholds['features']:.2f})")
    for protocol in PROTOCOLS:
        print(f"\n{protocol}:\n{tables[protocol]}")
    print(f"\nboth protocols (the README's excerpt):\n{tables['readme']}")
    results["speed"] = speed(args, model, bank, device)
    timings["total_s"] = time.perf_counter() - start
    write_raw(args.json, "bench_diffusion", command, results)
    tables = render_tables({"results": results})
    print(f"\nspeed, batch of {args.speed_batch} 256 px images, {args.sampling_steps} steps, guidance {args.guidance}")
    print(tables["speed"])
    print(f"\ntotal {timings['total_s'] / 60:.1f} min; raw results: {args.json}")
    return results


if __name__ == "__main__":
    main()
