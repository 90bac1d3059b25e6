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
