"""Session folders: session.json, free folder names, atomic writes."""

from __future__ import annotations

import pytest

from napari_sam2.errors import InputError
from napari_sam2.files.session_files import (
    default_session_folder,
    free_folder,
    read_session_json,
    session_id_of,
    write_session_json,
)


def test_session_folders_never_take_another_session(tmp_path):
    folder = default_session_folder(str(tmp_path / "movie.tif"), "my cells")
    assert folder == tmp_path / "my_cells_sam2_session"
    assert free_folder(folder, "me") == folder
    folder.mkdir()
    write_session_json(folder, {"objects": [], "session_id": "someone-else"})
    assert session_id_of(folder) == "someone-else"
    assert free_folder(folder, "me") == tmp_path / "my_cells_sam2_session_2"
    assert free_folder(folder, "someone-else") == folder  # our own: overwrite is fine
    assert read_session_json(folder)["session_id"] == "someone-else"
    with pytest.raises(InputError, match="no session.json"):
        read_session_json(tmp_path)


@pytest.mark.parametrize(
    "frames, match",
    [
        ([0, 5], r"object 1's frames end at 5, but labels.tif has 3 frames"),
        ([2, 1], r"objects\[0\].frames: first frame 2 is after last frame 1"),
        ([1], r"objects\[0\].frames must be a \[first, last\] pair"),
        ([-1, 1], r"objects\[0\].frames"),
    ],
)
def test_saved_frame_ranges_are_checked(tmp_path, frames, match):
    import json

    import numpy as np

    from napari_sam2.files.saved_session import read_session
    from napari_sam2.files.tiff import write_label_tiff

    meta = {"objects": [{"id": 1, "name": "track 1", "frames": frames}]}
    (tmp_path / "session.json").write_text(json.dumps(meta))
    write_label_tiff(tmp_path / "labels.tif", np.zeros((3, 8, 8), np.int32))
    with pytest.raises(InputError, match=match):
        read_session(tmp_path)
    meta["objects"][0]["frames"] = [1, 2]
    (tmp_path / "session.json").write_text(json.dumps(meta))
    assert read_session(tmp_path).frame_ranges == {1: (1, 2)}
