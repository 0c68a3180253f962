"""Which videos a batch takes and what their outputs are called (no models, no decoding)."""
import pytest

from livepose.batch.inputs import resolve_inputs
from livepose.files import MediaError


def touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def keys(items):
    return [item.key for item in items]


def test_a_folder_is_searched_recursively_by_video_extension_and_keeps_relative_paths(tmp_path):
    root = tmp_path / "videos"
    for name in ("a.mp4", "deep/er/b.AVI", "notes.txt", "still.jpg", ".hidden.mp4", ".cache/c.mp4"):
        touch(root / name)
    assert keys(resolve_inputs([root])) == ["a", "deep/er/b"]


def test_files_globs_and_several_roots_each_keep_their_own_relative_names(tmp_path):
    touch(tmp_path / "x" / "one.mp4")
    touch(tmp_path / "y" / "day1" / "two.mkv")
    touch(tmp_path / "y" / "day2" / "three.mov")
    found = resolve_inputs([tmp_path / "x" / "one.mp4", str(tmp_path / "y" / "day*" / "*.m*")])
    assert keys(found) == ["one", "day1/two", "day2/three"]


def test_manifests_relative_absolute_and_urls(tmp_path):
    touch(tmp_path / "lists" / "clips" / "a.mp4")
    elsewhere = touch(tmp_path / "other" / "b.mp4")
    (tmp_path / "lists" / "m.txt").write_text(f"# comment\nclips/a.mp4\n\n{elsewhere}\nhttps://127.0.0.1/v/c.mp4\n")
    found = resolve_inputs([tmp_path / "lists" / "m.txt"])
    assert keys(found) == ["clips/a", str(elsewhere.resolve().with_suffix("")).lstrip("/"), "127.0.0.1/v/c"]
    (tmp_path / "lists" / "m.csv").write_text("path,label\nclips/a.mp4,walk\n")
    assert keys(resolve_inputs([tmp_path / "lists" / "m.csv"])) == ["clips/a"]
    (tmp_path / "lists" / "bad.csv").write_text("file\nclips/a.mp4\n")
    with pytest.raises(MediaError, match="bad.csv: expected a `path` column"):
        resolve_inputs([tmp_path / "lists" / "bad.csv"])


def test_two_inputs_with_one_output_name_are_refused_by_name(tmp_path):
    a, b = touch(tmp_path / "a" / "walk.mp4"), touch(tmp_path / "b" / "walk.avi")
    with pytest.raises(MediaError, match=f"{a}.*{b}.*walk"):
        resolve_inputs([a, b])
    assert keys(resolve_inputs([a, a])) == ["walk"]  # the same file twice is one video


def test_nothing_matched_names_the_patterns(tmp_path):
    touch(tmp_path / "empty" / "readme.txt")
    with pytest.raises(MediaError, match=r"no videos matched .*empty.*nothing\*\.mp4"):
        resolve_inputs([tmp_path / "empty", str(tmp_path / "nothing*.mp4")])


@pytest.mark.parametrize("live", ["rtsp://127.0.0.1:8554/cam", "udp://127.0.0.1:5000", "0", "/dev/video0"])
def test_live_sources_are_refused(live):
    with pytest.raises(MediaError, match="live source"):
        resolve_inputs([live])


def test_out_inside_an_input_folder_is_refused(tmp_path):
    touch(tmp_path / "videos" / "a.mp4")
    with pytest.raises(MediaError, match="--out .*inside the input folder"):
        resolve_inputs([tmp_path / "videos"], out_dir=tmp_path / "videos" / "results")
