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
