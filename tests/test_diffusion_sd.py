"""The Stable Diffusion inpainting backend (defectgen.sources.diffusion.stable_diffusion) on a tiny random-init
pipeline folder written here by ``StableDiffusionInpaintPipeline.save_pretrained``: nothing is downloaded."""
import json
import shutil

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from defectgen import DiffusionDefect, DiffusionInpaint, RegionDefect  # noqa: E402
from defectgen.sources.diffusion.stable_diffusion import StableDiffusionInpaint  # noqa: E402

RESOLUTION = 16  # VAE downsampling 2, UNet downsampling 2: latents of 8 x 8
PROMPTS = {"crack": "a thin dark crack on glass", "stain": "a round brown stain"}


def tiny_unet(in_channels=9):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(sample_size=8, in_channels=in_channels, out_channels=4, block_out_channels=(32, 64),
                                layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                norm_num_groups=32, attention_head_dim=8)


def write_tokenizer(folder):
    """A CLIP BPE vocabulary of single letters (no merges): enough to tell prompts apart."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for letter in letters:
            vocab[letter + suffix] = len(vocab)
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """``{"sd": the inpainting pipeline, "plain": the same with a 4-channel (text-to-image) UNet,
    "no_text": the same without tokenizer and text encoder}``."""
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionInpaintPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    root = tmp_path_factory.mktemp("sd")
    write_tokenizer(root / "vocab")
    tokenizer = CLIPTokenizer.from_pretrained(root / "vocab", local_files_only=True, model_max_length=16)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = tiny_unet()
        vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(32, 64), layers_per_block=1,
                            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                            latent_channels=4, norm_num_groups=32, sample_size=RESOLUTION)
        text_encoder = CLIPTextModel(CLIPTextConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                                    num_attention_heads=4, vocab_size=1000, max_position_embeddings=16,
                                                    bos_token_id=0, eos_token_id=1, pad_token_id=1))
        plain_unet = tiny_unet(in_channels=4)
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1)
    StableDiffusionInpaintPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False).save_pretrained(root / "sd")
    shutil.copytree(root / "sd", root / "plain")
    shutil.rmtree(root / "plain" / "unet")
    plain_unet.save_pretrained(root / "plain" / "unet")
    shutil.copytree(root / "sd", root / "no_text", ignore=shutil.ignore_patterns("tokenizer", "text_encoder"))
    return {name: root / name for name in ("sd", "plain", "no_text")}


@pytest.fixture(scope="module")
def backend(folders):
    return StableDiffusionInpaint(folders["sd"], prompts=PROMPTS, resolution=RESOLUTION)


def windows(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    crops = torch.rand(n, 3, RESOLUTION, RESOLUTION, generator=g) * 2 - 1
    masks = torch.zeros(n, 1, RESOLUTION, RESOLUTION)
    masks[..., 4:11, 5:12] = 1
    return crops, masks


def run(backend, classes, seeds, crops=None, masks=None, **kwargs):
    if crops is None:
        crops, masks = windows(len(classes))
    kwargs = {"steps": 3, **kwargs}
    return backend.inpaint(crops, masks, torch.tensor(classes), torch.tensor(seeds, dtype=torch.int64), **kwargs)


def test_interface_matches_the_pixel_backend(backend, folders):
    assert backend.class_names == backend.defect_classes == ["crack", "stain"]
    assert backend.class_id("crack") == 1 and backend.class_id("stain") == 2
    with pytest.raises(ValueError, match="'rust'.*crack"):
        backend.class_id("rust")
    assert (backend.resolution, backend.context, backend.min_side, backend.channels) == (RESOLUTION, 0.5, 16.0, 3)
    assert backend.to("cpu") is backend and backend.device == torch.device("cpu")
    config = backend.config()
    assert json.loads(json.dumps(config)) == config
    assert config["path"] == str(folders["sd"]) and config["prompts"] == PROMPTS
    assert backend.prompt_table.shape == (3, 16, 32)  # null class + 2 prompts, 16 tokens, width 32


def test_output_shape_range_and_exact_replay(backend):
    out = run(backend, [1, 2], [5, 6])
    assert out.shape == (2, 3, RESOLUTION, RESOLUTION) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.min() >= -1 and out.max() <= 1
    assert torch.equal(out, run(backend, [1, 2], [5, 6]))
    other = run(backend, [1, 2], [7, 6])
    assert float((other[0] - out[0]).abs().max()) > 1e-3 and torch.equal(other[1], out[1])


def test_the_class_prompt_and_guidance_change_the_output(backend):
    crops, masks = windows(1)
    crops, masks = crops.expand(2, -1, -1, -1), masks.expand(2, -1, -1, -1)  # one window twice, one seed
    out = run(backend, [1, 2], [3, 3], crops, masks)
    assert float((out[0] - out[1]).abs().max()) > 1e-3
    same = run(backend, [1, 1], [3, 3], crops, masks)
    torch.testing.assert_close(same[0], same[1])
    guided = run(backend, [1, 2], [3, 3], crops, masks, guidance=3.0)
    assert guided.shape == out.shape and float((guided - out).abs().max()) > 1e-3


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_a_sample_does_not_depend_on_its_batch(backend, guidance):
    crops, masks = windows(2, seed=1)
    together = run(backend, [1, 2], [11, 12], crops, masks, guidance=guidance)
    for i, (cls, seed) in enumerate([(1, 11), (2, 12)]):
        alone = run(backend, [cls], [seed], crops[i:i + 1], masks[i:i + 1], guidance=guidance)
        assert torch.allclose(alone[0], together[i], atol=1e-5)


def test_strength_below_one_starts_from_the_crop(backend):
    full = run(backend, [1, 1], [4, 5], steps=4)
    partial = run(backend, [1, 1], [4, 5], steps=4, strength=0.5)
    assert partial.shape == full.shape and torch.isfinite(partial).all()
    assert float((partial - full).abs().max()) > 1e-3
    with pytest.raises(ValueError, match="strength"):
        run(backend, [1], [4], strength=0.0)


def test_prompt_embeddings_without_text_encoder(backend, folders):
    """Embeddings encoded elsewhere give the prompts' result exactly; guidance then needs the negative one."""
    table = backend.prompt_table
    embeds = {"crack": table[1], "stain": table[2][None]}  # (L, D) or (1, L, D)
    no_text = StableDiffusionInpaint(folders["no_text"], prompt_embeds=embeds, resolution=RESOLUTION)
    assert no_text.class_names == ["crack", "stain"] and no_text.config()["prompts"] is None
    assert torch.equal(run(no_text, [1, 2], [8, 9]), run(backend, [1, 2], [8, 9]))
    with pytest.raises(ValueError, match="negative_prompt_embeds"):
        run(no_text, [1, 2], [8, 9], guidance=3.0)
    guided = StableDiffusionInpaint(folders["no_text"], prompt_embeds=embeds, negative_prompt_embeds=table[0],
                                    resolution=RESOLUTION)
    assert torch.equal(run(guided, [1, 2], [8, 9], guidance=3.0), run(backend, [1, 2], [8, 9], guidance=3.0))
    # a folder with a text encoder encodes the negative prompt itself
    with_text = StableDiffusionInpaint(folders["sd"], prompt_embeds=embeds, resolution=RESOLUTION)
    assert torch.equal(with_text.prompt_table, table)
    with pytest.raises(ValueError, match="width 8.*32"):
        StableDiffusionInpaint(folders["no_text"], prompt_embeds={"crack": torch.zeros(16, 8)}, resolution=RESOLUTION)


def test_folder_errors(folders, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        StableDiffusionInpaint(tmp_path / "missing", prompts=PROMPTS)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        StableDiffusionInpaint(tmp_path / "file", prompts=PROMPTS)
    with pytest.raises(ValueError, match="no model_index.json"):
        StableDiffusionInpaint(tmp_path, prompts=PROMPTS)
    (tmp_path / "defectgen_inpaint.json").write_text("{}")
    with pytest.raises(ValueError, match="defectgen inpainting model"):
        StableDiffusionInpaint(tmp_path, prompts=PROMPTS)
    with pytest.raises(ValueError, match=r"not a Stable Diffusion \*inpainting\* model.*4 channels"):
        StableDiffusionInpaint(folders["plain"], prompts=PROMPTS, resolution=RESOLUTION)
    with pytest.raises(ValueError, match=r"no_text.*lacks tokenizer/, text_encoder/"):
        StableDiffusionInpaint(folders["no_text"], prompts=PROMPTS, resolution=RESOLUTION)
    with pytest.raises(ValueError, match="multiple of 4"):
        StableDiffusionInpaint(folders["sd"], prompts=PROMPTS, resolution=18)


def test_argument_errors(backend, folders):
    with pytest.raises(TypeError, match="exactly one of prompts"):
        StableDiffusionInpaint(folders["sd"])
    with pytest.raises(TypeError, match="exactly one of prompts"):
        StableDiffusionInpaint(folders["sd"], prompts=PROMPTS, prompt_embeds={"crack": torch.zeros(16, 32)})
    with pytest.raises(ValueError, match="at least one class"):
        StableDiffusionInpaint(folders["sd"], prompts={})
    with pytest.raises(ValueError, match="class ids must lie in 0..2"):
        run(backend, [3], [1])
    with pytest.raises(ValueError, match="crops must be"):
        backend.inpaint(torch.zeros(1, 3, 8, 8), torch.zeros(1, 1, 8, 8), torch.tensor([1]), torch.tensor([1]))


def test_the_diffusion_source_runs_it(backend):
    source = DiffusionInpaint(backend, steps=2, guidance=2.0)
    assert source.class_names == ["crack", "stain"]
    op = RegionDefect(mask={"type": "shape"}, source=source, blend="feather")
    images = torch.rand(3, 3, 40, 40)
    out = op(images, seed=0)
    outside = ~out.mask.expand_as(images)
    assert out.mask.any() and torch.equal(out.image[outside], images[outside])
    again = DiffusionDefect(backend, steps=2, guidance=2.0)(images, seed=1)
    assert torch.equal(again.image, DiffusionDefect(backend, steps=2, guidance=2.0)(images, seed=1).image)


def test_loads_and_runs_without_the_network(folders, no_network):
    loaded = StableDiffusionInpaint(folders["sd"], prompts={"crack": "a crack"}, resolution=RESOLUTION)
    out = run(loaded, [1], [1], steps=2, guidance=2.0)
    assert out.shape == (1, 3, RESOLUTION, RESOLUTION)
    assert no_network == []
