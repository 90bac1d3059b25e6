"""The napari side: the only folder that imports qtpy, magicgui, superqt or napari."""
