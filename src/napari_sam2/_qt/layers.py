"""The three napari layers the widget works with, and reading prompts out of them.

For an image layer called ``cells`` the widget creates (or adopts, when they
already exist) ``cells SAM2 points`` (clicks: feature ``label`` 1/0 and
``object``), ``cells SAM2 boxes`` (rectangles, feature ``object``) and
``cells SAM2 labels`` (the output, also the object picker: its
``selected_label`` is the current object). They share the image's scale and
translation, so their data coordinates are the image's pixel coordinates.

No Qt here: only napari layer objects.
"""

from __future__ import annotations

import numpy as np

from .controller import Key, group_boxes, group_points

POINTS_SUFFIX = " SAM2 points"
BOXES_SUFFIX = " SAM2 boxes"
LABELS_SUFFIX = " SAM2 labels"

POSITIVE_SYMBOL, NEGATIVE_SYMBOL = "disc", "cross"


def layer_names(image_name: str) -> dict[str, str]:
    return {
        "points": image_name + POINTS_SUFFIX,
        "boxes": image_name + BOXES_SUFFIX,
        "labels": image_name + LABELS_SUFFIX,
    }


def image_frames(image) -> tuple[object, bool]:
    """The image's full-resolution data, lazily (level 0 of a pyramid), and whether it is RGB."""
    data = image.data[0] if getattr(image, "multiscale", False) else image.data
    return data, bool(getattr(image, "rgb", False))


def spatial_shape(image) -> tuple[int, ...]:
    """Shape of the image without its RGB channel axis: the labels' shape."""
    data, rgb = image_frames(image)
    shape = tuple(int(s) for s in data.shape)
    return shape[:-1] if rgb else shape


def _transform(image) -> dict:
    out = {"scale": tuple(image.scale), "translate": tuple(image.translate)}
    names = getattr(image, "axis_labels", None)
    if names is not None and not all(str(n).lstrip("-").isdigit() for n in names):
        # The image's axis names (t, y, x): the viewer's slider keeps them.
        out["axis_labels"] = tuple(str(n) for n in names)[-len(spatial_shape(image)) :]
    return out


def _align(layer, image) -> None:
    """Give an adopted layer the image's transform, so data coordinates match pixels."""
    if not np.allclose(layer.scale, image.scale) or not np.allclose(
        layer.translate, image.translate
    ):
        layer.scale = image.scale
        layer.translate = image.translate


def _find(viewer, name: str, kind: str, ndim: int):
    for layer in viewer.layers:
        if layer.name == name and type(layer).__name__ == kind and layer.ndim == ndim:
            return layer
    return None


def point_size(image) -> float:
    """Points big enough to see on the frame, small enough to click between cells."""
    h, w = spatial_shape(image)[-2:]
    return float(np.clip(max(h, w) / 50, 3, 24))


def ensure_points(viewer, image):
    """The prompt Points layer of ``image``: adopted when present, created otherwise."""
    from napari.layers import Points

    ndim = len(spatial_shape(image))
    name = layer_names(image.name)["points"]
    layer = _find(viewer, name, "Points", ndim)
    if layer is None:
        layer = Points(
            np.empty((0, ndim)),
            ndim=ndim,
            name=name,
            features={"label": np.zeros(0, np.int64), "object": np.zeros(0, np.int64)},
            feature_defaults={"label": 1, "object": 1},
            size=point_size(image),
            border_color="white",
            border_width=0.15,
            out_of_slice_display=False,
            **_transform(image),
        )
        viewer.add_layer(layer)
    else:
        _align(layer, image)
        _ensure_features(layer, {"label": 1, "object": 1})
    return layer


def ensure_boxes(viewer, image):
    """The prompt Shapes layer (rectangles are boxes) of ``image``."""
    from napari.layers import Shapes

    ndim = len(spatial_shape(image))
    name = layer_names(image.name)["boxes"]
    layer = _find(viewer, name, "Shapes", ndim)
    if layer is None:
        layer = Shapes(
            ndim=ndim,
            name=name,
            features={"object": np.zeros(0, np.int64)},
            feature_defaults={"object": 1},
            face_color="transparent",
            edge_width=max(1.0, point_size(image) / 4),
            **_transform(image),
        )
        viewer.add_layer(layer)
    else:
        _align(layer, image)
        _ensure_features(layer, {"object": 1})
    return layer


def ensure_labels(viewer, image):
    """The output Labels layer of ``image`` (int32 zeros, allocated lazily by the OS)."""
    from napari.layers import Labels

    shape = spatial_shape(image)
    name = layer_names(image.name)["labels"]
    layer = _find(viewer, name, "Labels", len(shape))
    if layer is not None and tuple(layer.data.shape) == shape:
        _align(layer, image)
        return layer
    layer = Labels(np.zeros(shape, np.int32), name=name, opacity=0.5, **_transform(image))
    layer.selected_label = 1
    viewer.add_layer(layer)
    return layer


def _ensure_features(layer, defaults: dict) -> None:
    """Add missing prompt feature columns to an adopted layer."""
    n = len(layer.data)
    features = layer.features.copy()
    missing = {k: v for k, v in defaults.items() if k not in features.columns}
    if not missing:
        return
    for key, value in missing.items():
        features[key] = np.full(n, value, dtype=np.int64)
    layer.features = features
    layer.feature_defaults = {**defaults, **_current_defaults(layer)}


def _current_defaults(layer) -> dict:
    fd = layer.feature_defaults
    return {c: fd[c].iloc[0] for c in fd.columns} if len(fd) else {}


# --------------------------------------------------------------------------- reading prompts


def read_points(layer, axis: int) -> dict[Key, tuple[np.ndarray, np.ndarray]]:
    """Clicks grouped per (frame, object) from the prompt Points layer."""
    if layer is None or not len(layer.data):
        return {}
    feats = layer.features
    labels = feats["label"].to_numpy() if "label" in feats else np.ones(len(layer.data))
    objs = feats["object"].to_numpy() if "object" in feats else np.ones(len(layer.data))
    return group_points(np.asarray(layer.data), labels, objs, axis)


def read_boxes(layer, axis: int) -> dict[Key, tuple[float, float, float, float]]:
    """One box per (frame, object) from the rectangles of the prompt Shapes layer."""
    if layer is None or not len(layer.data):
        return {}
    objs = layer.features["object"].to_numpy() if "object" in layer.features else None
    verts, owners = [], []
    for i, (shape_type, data) in enumerate(zip(layer.shape_type, layer.data, strict=True)):
        if shape_type == "rectangle":
            verts.append(data)
            owners.append(1 if objs is None else int(objs[i]))
    return group_boxes(verts, owners, axis)


# --------------------------------------------------------------------------- styling


def style_points(layer, colour_of) -> None:
    """Face colour = the object's label colour; positive clicks discs, negative crosses."""
    n = len(layer.data)
    if not n:
        return
    objs = layer.features["object"].to_numpy()
    labels = layer.features["label"].to_numpy()
    colours = np.array([colour_of(int(o)) for o in objs], dtype=np.float32).reshape(n, 4)
    colours[:, 3] = 1.0
    symbols = [POSITIVE_SYMBOL if lab else NEGATIVE_SYMBOL for lab in labels]
    layer.face_color = colours
    layer.symbol = symbols
    # Negative crosses have no fill to show: their border carries the colour.
    border = np.where(labels[:, None] == 1, np.ones((n, 4), np.float32), colours)
    layer.border_color = border


def style_boxes(layer, colour_of) -> None:
    """Rectangle edges in the object's label colour."""
    n = len(layer.data)
    if not n:
        return
    objs = layer.features["object"].to_numpy()
    colours = np.array([colour_of(int(o)) for o in objs], dtype=np.float32).reshape(n, 4)
    colours[:, 3] = 1.0
    layer.edge_color = colours


def label_colour(labels_layer, obj: int) -> np.ndarray:
    """RGBA of an object id in the Labels layer's colormap."""
    return np.asarray(labels_layer.colormap.map(int(obj)), dtype=np.float32).reshape(4)


# --------------------------------------------------------------------------- writing prompts


def add_point_rows(layer, rows, axis: int) -> None:
    """Append clicks (PointRow) to the prompt Points layer in one go."""
    if not rows:
        return
    coords = np.array([_coords(p.frame, p.row, p.col, axis) for p in rows], dtype=np.float64)
    feats = layer.features.copy()
    new = {"label": [int(p.label) for p in rows], "object": [int(p.obj) for p in rows]}
    import pandas as pd

    features = pd.concat([feats, pd.DataFrame(new)], ignore_index=True)
    data = np.concatenate([np.asarray(layer.data).reshape(-1, 3), coords])
    layer.data = data
    layer.features = features


def add_box_rows(layer, rows, axis: int) -> None:
    """Append boxes (BoxRow) as rectangles to the prompt Shapes layer."""
    for b in rows:
        corners = [(b.row0, b.col0), (b.row0, b.col1), (b.row1, b.col1), (b.row1, b.col0)]
        verts = np.array([_coords(b.frame, r, c, axis) for r, c in corners], dtype=np.float64)
        layer.feature_defaults = {"object": int(b.obj)}
        layer.add_rectangles(verts)


def _coords(frame: int, row: float, col: float, axis: int) -> list[float]:
    out = [float(row), float(col)]
    out.insert(axis, float(frame))
    return out


class LayerSet:
    """The image the widget works on, its three SAM 2 layers and the stack axis.

    One instance is shared by the widget's parts; the widget alone changes
    which layers it holds.
    """

    def __init__(self) -> None:
        self.image = None
        self.points = None
        self.boxes = None
        self.labels = None
        self.axis = 0

    @property
    def attached(self) -> bool:
        """True when the prompt and label layers exist."""
        return self.points is not None and self.boxes is not None and self.labels is not None

    def forget_prompt_layers(self) -> None:
        self.points = self.boxes = self.labels = None

    def num_frames(self) -> int:
        """Frames along the stack axis."""
        return int(spatial_shape(self.image)[self.axis])

    def frame_shape(self) -> tuple[int, int]:
        """(H, W) of one frame."""
        shape = list(spatial_shape(self.image))
        del shape[self.axis]
        return int(shape[0]), int(shape[1])

    def coords(self, frame: int, row: float, col: float) -> list[float]:
        """Layer data coordinates of (row, col) on ``frame``."""
        return _coords(frame, row, col, self.axis)
