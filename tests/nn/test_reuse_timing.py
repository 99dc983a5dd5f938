"""`hwnas bench reuse` on a video: one JSON object with dense/reuse times, CR, MACs saved, NMSE and per-layer rows."""

import json

import pytest
from datasets import write_video

from hwnas_pl.cli import cli_main


def _bench(tmp_path, capsys, video, hash_size):
    (tmp_path / "reuse.yaml").write_text(f"default: {{input_dim: 9, hash_size: {hash_size}}}\nskip: [fc]\n")
    cli_main(["bench", "reuse", "--video", str(video), "--model", "resnet18", "--height", "32", "--width", "32",
              "--frames", "3", "--warmup", "1", "--config", str(tmp_path / "reuse.yaml")])  # fmt: skip
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.slow
def test_bench_reuse_prints_the_measurement(tmp_path, capsys):
    video = write_video(tmp_path / "clip.mp4", 5, 32, 32)
    fine, coarse = _bench(tmp_path, capsys, video, 62), _bench(tmp_path, capsys, video, 2)
    assert fine["frames"] == 3 and fine["input"] == [3, 32, 32] and fine["dense_ms_per_frame"] > 0
    assert fine["speedup"] == pytest.approx(fine["dense_ms_per_frame"] / fine["reuse_ms_per_frame"])
    # more hyperplanes: more, finer clusters, so less compression and a smaller output error
    assert 0.0 <= fine["compression_ratio"] < coarse["compression_ratio"] < 1.0
    assert fine["output_nmse"] < coarse["output_nmse"]
    assert 0.0 < coarse["macs_saved_fraction"] < 1.0
    fc = next(r for r in fine["layers"] if r["layer"] == "fc")
    assert fc["dense_because"] == "kept dense by the config"
    conv = next(r for r in fine["layers"] if r["layer"] == "layer1.0.conv1")
    assert conv["hash_size"] == 62 and conv["dense_ms"] > 0 and conv["nmse"] >= 0.0


def test_bench_reuse_config_errors_are_one_sentence(tmp_path, capsys):
    video = write_video(tmp_path / "clip.mp4", 2, 32, 32)
    (tmp_path / "bad.yaml").write_text("defaults: {input_dim: 9}\n")
    with pytest.raises(SystemExit):
        cli_main(["bench", "reuse", "--video", str(video), "--config", str(tmp_path / "bad.yaml")])
    assert "Reuse config key 'defaults' is unknown; expected layers, default, skip." in capsys.readouterr().err


@pytest.mark.slow
def test_bench_reuse_inter_frame_modes_save_more_than_intra(tmp_path, capsys):
    video = write_video(tmp_path / "clip.mp4", 5, 32, 32)
    runs = {}
    for mode in ("intra", "inter", "both"):
        cli_main(["bench", "reuse", "--video", str(video), "--model", "resnet18", "--height", "32", "--width", "32",
                  "--frames", "3", "--warmup", "1", "--reuse_frames", mode])  # fmt: skip
        runs[mode] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert runs[mode]["reuse_frames"] == mode
    # intra clusters within a frame; inter only takes the previous frame's products; both does the two
    assert 0.0 < runs["intra"]["compression_ratio"] < runs["both"]["compression_ratio"]
    assert 0.0 < runs["inter"]["compression_ratio"] <= runs["both"]["compression_ratio"]


@pytest.mark.slow
def test_benchmark_reuse_times_a_vit_with_attention_rows(tmp_path):
    from timm.models.vision_transformer import VisionTransformer

    from hwnas_pl.nn.reuse import QKV_REASON
    from hwnas_pl.nn.reuse_timing import benchmark_reuse

    video = write_video(tmp_path / "clip.mp4", 3, 32, 32)
    vit = VisionTransformer(img_size=32, patch_size=8, num_classes=3, embed_dim=16, depth=1, num_heads=2)
    out = benchmark_reuse(video, vit, 32, 32, frames=2, warmup=1, default={"input_dim": 8, "hash_size": 8})
    rows = {r["layer"]: r for r in out["layers"]}
    assert rows["blocks.0.attn"]["reuse_ms"] > 0 and 0.0 <= rows["blocks.0.attn"]["cr"] <= 1.0
    assert rows["blocks.0.attn"]["nmse"] >= 0.0 and rows["blocks.0.attn.qkv"]["dense_because"] == QKV_REASON
    assert out["model"] == "VisionTransformer" and out["output_nmse"] >= 0.0


def test_output_nmse_by_hand():
    import torch

    from hwnas_pl.nn.reuse_timing import output_nmse

    # ||y - y_hat||^2 / ||y||^2 = (0 + 4) / (1 + 4)
    assert output_nmse(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 0.0])) == pytest.approx(0.8)
