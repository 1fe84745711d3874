"""Loaders for the data sets and synthetic tasks used by torchnode's examples.

Everything here works offline. Small tables ship inside the package under
``torchnode/tasks/data``; the digits come from scikit-learn's bundled copy;
Fashion-MNIST is read from the files that Debian's ``dataset-fashion-mnist``
package installs; the synthetic tasks are generated from a seed.

The module holds plain functions only (no registry, no models, no training):

* :func:`load_hare_lynx` - Hudson's Bay Company hare and lynx pelts, 1900-1920.
* :func:`load_sunspots` - yearly mean sunspot numbers, 1700-2008.
* :func:`load_digits_split` - 8x8 handwritten digits with a seeded stratified split.
* :func:`read_idx` and :func:`load_fashion_mnist` - IDX files and Fashion-MNIST.
* :func:`make_crossing`, :func:`make_circles` - the 1-D crossing and the nested
  circles of Dupont et al. (2019), "Augmented Neural ODEs".
* :func:`make_spiral` - a noisy trajectory of the cubic spiral used in the
  demonstration of Chen et al. (2018), "Neural Ordinary Differential Equations".
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from importlib import resources
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_ROOT",
    "load_digits_split",
    "load_fashion_mnist",
    "load_hare_lynx",
    "load_sunspots",
    "make_circles",
    "make_crossing",
    "make_spiral",
    "read_idx",
]

# ---------------------------------------------------------------------------
# Tables shipped with the package
# ---------------------------------------------------------------------------


def _read_table(name: str, columns: tuple[str, ...]) -> np.ndarray:
    """Read a shipped CSV table into a float64 array of shape ``[rows, columns]``.

    Lines starting with ``#`` are comments (citations); the first other line is
    the header and must equal ``columns``.
    """
    text = resources.files("torchnode.tasks").joinpath("data", name).read_text("utf-8")
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines or tuple(h.strip() for h in lines[0].split(",")) != columns:
        raise ValueError(
            f"packaged table {name!r}: expected header {','.join(columns)!r}, "
            f"found {lines[0] if lines else 'nothing'!r}"
        )
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split(",")
        if len(fields) != len(columns):
            raise ValueError(
                f"packaged table {name!r}: data row {number} has {len(fields)} "
                f"fields, expected {len(columns)}"
            )
        rows.append([float(v) for v in fields])
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(columns))


def load_hare_lynx() -> tuple[np.ndarray, np.ndarray]:
    """Snowshoe hare and Canada lynx pelts traded with the Hudson's Bay Company.

    Yearly counts for 1900-1920 (Hewitt 1921; MacLulich 1937), the classic
    predator-prey series. The citation travels with the data in
    ``torchnode/tasks/data/hare_lynx.csv``.

    Returns:
        years: float64 array of shape ``[21]``, calendar years 1900.0 ... 1920.0.
        pelts: float64 array of shape ``[21, 2]``; column 0 is hare, column 1 is
            lynx, both in thousands of pelts.
    """
    table = _read_table("hare_lynx.csv", ("year", "hare", "lynx"))
    return table[:, 0].copy(), table[:, 1:].copy()


def load_sunspots() -> tuple[np.ndarray, np.ndarray]:
    """Yearly mean sunspot numbers, 1700-2008 (public domain).

    The original (version 1) international sunspot number series compiled by
    SIDC (Royal Observatory of Belgium) and published by NOAA's National
    Geophysical Data Center, as tabulated in ``statsmodels.datasets.sunspots``.
    Shipped in ``torchnode/tasks/data/sunspots.csv``.

    Returns:
        years: float64 array of shape ``[309]``, calendar years 1700.0 ... 2008.0.
        values: float64 array of shape ``[309]``, the yearly mean sunspot number
            (a dimensionless count index, one decimal).
    """
    table = _read_table("sunspots.csv", ("year", "sunspots"))
    return table[:, 0].copy(), table[:, 1].copy()


# ---------------------------------------------------------------------------
# Digits (scikit-learn's bundled copy)
# ---------------------------------------------------------------------------


def load_digits_split(
    seed: int = 0, test_fraction: float = 0.2
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 8x8 handwritten digits with a fixed, seeded, stratified split.

    Uses scikit-learn's ``load_digits`` (1,797 images shipped inside
    scikit-learn; nothing is downloaded). For every class, ``round(test_fraction
    * class_size)`` images (at least one, and leaving at least one for training)
    are drawn without replacement for the test set with
    ``numpy.random.default_rng(seed)``; the rest form the training set. Both sets
    keep the original order of the data set. The same seed always gives the same
    split. With the defaults the split is 1,438 training and 359 test images.

    Args:
        seed: seed of the random generator that picks the test images.
        test_fraction: fraction of each class put in the test set, in ``(0, 1)``.

    Returns:
        x_train: float32 tensor ``[N_train, 1, 8, 8]``, pixel intensities
            divided by 16, so in ``[0, 1]``.
        y_train: int64 tensor ``[N_train]``, digit labels 0-9.
        x_test: float32 tensor ``[N_test, 1, 8, 8]``, as ``x_train``.
        y_test: int64 tensor ``[N_test]``, as ``y_train``.

    Raises:
        ValueError: if ``test_fraction`` is not strictly between 0 and 1.
        ImportError: if scikit-learn is not installed.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "load_digits_split needs scikit-learn: pip install 'torchnode[cli]'"
        ) from exc

    digits = load_digits()
    images = np.asarray(digits.images, dtype=np.float32) / np.float32(16.0)
    labels = np.asarray(digits.target, dtype=np.int64)

    rng = np.random.default_rng(seed)
    is_test = np.zeros(labels.shape[0], dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        n_test = round(test_fraction * members.size)
        n_test = min(max(n_test, 1), members.size - 1)
        is_test[rng.choice(members, size=n_test, replace=False)] = True

    x = torch.from_numpy(images).unsqueeze(1)
    y = torch.from_numpy(labels)
    train = torch.from_numpy(~is_test)
    test = torch.from_numpy(is_test)
    return x[train], y[train], x[test], y[test]


# ---------------------------------------------------------------------------
# IDX files and Fashion-MNIST
# ---------------------------------------------------------------------------

# IDX type byte -> big-endian numpy dtype.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (the MNIST file format), plain or gzip-compressed.

    The format is a 4-byte magic number ``0x00 0x00 T D`` - ``T`` the element
    type (``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16, ``0x0C`` int32, ``0x0D``
    float32, ``0x0E`` float64) and ``D`` the number of dimensions - then ``D``
    big-endian uint32 sizes, then the elements in C order, big-endian.
    Compression is detected from the gzip magic bytes, whatever the file name.

    Args:
        path: the file to read.

    Returns:
        An array of shape given by the file's sizes, with the element type in
        native byte order (uint8 for images and labels). The array owns its data.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: naming the file, for a bad magic number or type byte, a
            truncated header or body, trailing bytes after the last element, or
            a corrupt gzip stream.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: corrupt or truncated gzip data ({exc})") from exc

    if len(raw) < 4:
        raise ValueError(
            f"{path}: truncated IDX file, {len(raw)} bytes is shorter than the "
            "4-byte magic number"
        )
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(
            f"{path}: bad IDX magic number 0x{raw[:4].hex()}, expected 0x0000TTDD"
        )
    type_code, ndim = raw[2], raw[3]
    if type_code not in _IDX_DTYPES:
        raise ValueError(
            f"{path}: bad IDX magic number 0x{raw[:4].hex()}, unknown element type "
            f"0x{type_code:02x}"
        )
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise ValueError(
            f"{path}: truncated IDX file, header of {ndim} dimensions needs "
            f"{header_size} bytes, file has {len(raw)}"
        )
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[type_code]
    expected = header_size + math.prod(shape) * dtype.itemsize
    if len(raw) < expected:
        raise ValueError(
            f"{path}: truncated IDX file, shape {shape} of {dtype.name} needs "
            f"{expected} bytes, file has {len(raw)}"
        )
    if len(raw) > expected:
        raise ValueError(
            f"{path}: IDX size mismatch, shape {shape} of {dtype.name} needs "
            f"{expected} bytes, file has {len(raw)} ({len(raw) - expected} extra)"
        )
    data = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=header_size)
    return data.reshape(shape).astype(dtype.newbyteorder("="))


_DEBIAN_FASHION_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_ROOT = _DEBIAN_FASHION_ROOT
"""Folder where Debian's ``dataset-fashion-mnist`` package installs its files."""

FASHION_MNIST_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
"""File names of Fashion-MNIST as installed by ``dataset-fashion-mnist``."""


def _find_fashion_file(root: Path, name: str) -> Path | None:
    """The gzip file ``name`` under ``root``, or its uncompressed twin."""
    for candidate in (root / name, root / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def load_fashion_mnist(
    root: str | os.PathLike[str] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fashion-MNIST (Xiao et al. 2017) read from local IDX files.

    On Debian and Ubuntu the files come from the ``dataset-fashion-mnist``
    package (``apt-get install dataset-fashion-mnist``), which installs the four
    gzip-compressed files named in :data:`FASHION_MNIST_FILES` under
    :data:`FASHION_MNIST_ROOT`. Uncompressed copies (the same names without
    ``.gz``) are accepted too. Nothing is downloaded.

    Args:
        root: folder holding the four files; :data:`FASHION_MNIST_ROOT` (read
            at call time) by default.

    Returns:
        x_train: float32 tensor ``[60000, 1, 28, 28]``, pixel intensities divided
            by 255, so in ``[0, 1]``.
        y_train: int64 tensor ``[60000]``, class labels 0-9.
        x_test: float32 tensor ``[10000, 1, 28, 28]``, as ``x_train``.
        y_test: int64 tensor ``[10000]``, as ``y_train``.
        (The sizes are those of the real data; they are read from the files.)

    Raises:
        FileNotFoundError: if any file is missing; the message names the folder
            and the apt package that provides the files.
        ValueError: if a file is malformed (see :func:`read_idx`), holds the
            wrong kind of array, or images and labels disagree in number.
    """
    root = Path(FASHION_MNIST_ROOT if root is None else root)
    found = {
        key: _find_fashion_file(root, name) for key, name in FASHION_MNIST_FILES.items()
    }
    missing = [FASHION_MNIST_FILES[key] for key, path in found.items() if path is None]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST not found in {root}: missing {', '.join(missing)}. "
            "The files come from the Debian/Ubuntu package dataset-fashion-mnist; "
            "install it with `apt-get install dataset-fashion-mnist` "
            f"(it puts them in {_DEBIAN_FASHION_ROOT}); from Python, "
            "load_fashion_mnist(root=...) also reads them from another folder."
        )

    def split(images_key: str, labels_key: str) -> tuple[torch.Tensor, torch.Tensor]:
        images_path, labels_path = found[images_key], found[labels_key]
        assert images_path is not None and labels_path is not None
        images = read_idx(images_path)
        labels = read_idx(labels_path)
        if images.dtype != np.uint8 or images.ndim != 3:
            raise ValueError(
                f"{images_path}: expected uint8 images [N, rows, cols], got "
                f"{images.dtype} of shape {images.shape}"
            )
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise ValueError(
                f"{labels_path}: expected uint8 labels [N], got {labels.dtype} "
                f"of shape {labels.shape}"
            )
        if images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"{images_path} holds {images.shape[0]} images but {labels_path} "
                f"holds {labels.shape[0]} labels"
            )
        x = torch.from_numpy(images).to(torch.float32).div_(255.0).unsqueeze(1)
        y = torch.from_numpy(labels).to(torch.int64)
        return x, y

    x_train, y_train = split("train_images", "train_labels")
    x_test, y_test = split("test_images", "test_labels")
    return x_train, y_train, x_test, y_test


# ---------------------------------------------------------------------------
# Synthetic tasks
# ---------------------------------------------------------------------------


def make_crossing() -> tuple[torch.Tensor, torch.Tensor]:
    """The 1-D crossing task of Dupont et al. (2019), Fig. 1.

    The map ``-1 -> 1``, ``1 -> -1``: trajectories of a 1-D ODE cannot cross,
    so a plain neural ODE cannot fit it, while an augmented one can.

    Returns:
        x: float32 tensor ``[2, 1]``, the inputs ``[[-1], [1]]``.
        y: float32 tensor ``[2, 1]``, the targets ``[[1], [-1]]``.
    """
    x = torch.tensor([[-1.0], [1.0]], dtype=torch.float32)
    return x, -x


def _sample_annulus(
    rng: np.random.Generator, n: int, r_low: float, r_high: float
) -> np.ndarray:
    """``n`` points uniformly distributed (by area) in ``r_low <= r < r_high``."""
    radius = np.sqrt(rng.uniform(r_low**2, r_high**2, size=n))
    angle = rng.uniform(0.0, 2.0 * math.pi, size=n)
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)


def make_circles(
    n: int,
    seed: int,
    *,
    inner_radius: float = 0.5,
    outer_radii: tuple[float, float] = (1.0, 1.5),
) -> tuple[torch.Tensor, torch.Tensor]:
    """The nested-circles task of Dupont et al. (2019), in two dimensions.

    ``n // 2`` points are drawn uniformly (by area) from the disc ``r <
    inner_radius`` (0.5 by default) and labelled 0, and ``n - n // 2`` points
    uniformly from the annulus ``outer_radii[0] < r < outer_radii[1]`` (1 to 1.5
    by default) and labelled 1; the points are then shuffled. For the regression
    form of the paper (targets -1 and 1) use ``2 * labels - 1``.

    Args:
        n: number of points, at least 2.
        seed: seed of ``numpy.random.default_rng``; the same seed gives the same
            points in the same order.
        inner_radius: radius of the inner disc (label 0).
        outer_radii: inner and outer radius of the annulus (label 1).

    Returns:
        x: float32 tensor ``[n, 2]``, points in the plane (unitless).
        labels: int64 tensor ``[n]``, 0 for the disc and 1 for the annulus.

    Raises:
        ValueError: if ``n < 2`` or the radii are not
            ``0 < inner_radius < outer_radii[0] < outer_radii[1]``.
    """
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    r1, (r2, r3) = inner_radius, outer_radii
    if not 0.0 < r1 < r2 < r3:
        raise ValueError(
            "radii must satisfy 0 < inner_radius < outer_radii[0] < outer_radii[1], "
            f"got {r1}, {(r2, r3)}"
        )
    rng = np.random.default_rng(seed)
    n_inner = n // 2
    points = np.concatenate(
        [
            _sample_annulus(rng, n_inner, 0.0, r1),
            _sample_annulus(rng, n - n_inner, r2, r3),
        ]
    )
    labels = np.concatenate(
        [np.zeros(n_inner, dtype=np.int64), np.ones(n - n_inner, dtype=np.int64)]
    )
    order = rng.permutation(n)
    return (
        torch.from_numpy(points[order].astype(np.float32)),
        torch.from_numpy(labels[order]),
    )


# Chen et al.'s spiral: dy/dt = (y ** 3) @ SPIRAL_A for a row vector y.
_SPIRAL_A = ((-0.1, 2.0), (-2.0, -0.1))
_SPIRAL_Y0 = (2.0, 0.0)
# Largest RK4 step; the global error at this step is far below 1e-8.
_SPIRAL_MAX_STEP = 1e-3


def _spiral_rhs(y1: float, y2: float) -> tuple[float, float]:
    c1, c2 = y1 * y1 * y1, y2 * y2 * y2
    (a11, a12), (a21, a22) = _SPIRAL_A
    return c1 * a11 + c2 * a21, c1 * a12 + c2 * a22


def _spiral_trajectory(t: np.ndarray) -> np.ndarray:
    """Clean spiral at the increasing times ``t`` (from ``t[0] = 0``), by RK4."""
    out = np.empty((t.size, 2), dtype=np.float64)
    y1, y2 = _SPIRAL_Y0
    out[0] = (y1, y2)
    for i in range(1, t.size):
        span = float(t[i] - t[i - 1])
        steps = max(1, math.ceil(span / _SPIRAL_MAX_STEP))
        h = span / steps
        for _ in range(steps):
            k1 = _spiral_rhs(y1, y2)
            k2 = _spiral_rhs(y1 + 0.5 * h * k1[0], y2 + 0.5 * h * k1[1])
            k3 = _spiral_rhs(y1 + 0.5 * h * k2[0], y2 + 0.5 * h * k2[1])
            k4 = _spiral_rhs(y1 + h * k3[0], y2 + h * k3[1])
            y1 += h / 6.0 * (k1[0] + 2.0 * k2[0] + 2.0 * k3[0] + k4[0])
            y2 += h / 6.0 * (k1[1] + 2.0 * k2[1] + 2.0 * k3[1] + k4[1])
        out[i] = (y1, y2)
    return out


def make_spiral(
    n_points: int = 1000,
    noise_std: float = 0.0,
    seed: int = 0,
    t_max: float = 25.0,
    *,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One trajectory of the cubic spiral of Chen et al.'s ODE demonstration.

    The system is ``dy/dt = (y ** 3) @ A`` for a row vector ``y`` in the plane,
    with ``A = [[-0.1, 2.0], [-2.0, -0.1]]`` and ``y(0) = [2, 0]``, observed at
    ``n_points`` evenly spaced times in ``[0, t_max]``. The clean trajectory is
    integrated in float64 by classical RK4 with steps of at most 1e-3 (no
    dependency on torchnode's solvers); its error is below 1e-8 on ``[0, 25]``.
    The noisy copy adds independent Gaussian noise of standard deviation
    ``noise_std`` to each coordinate.

    Args:
        n_points: number of observation times, at least 2.
        noise_std: standard deviation of the observation noise (units of ``y``),
            at least 0.
        seed: seed of ``numpy.random.default_rng`` for the noise.
        t_max: final time, greater than 0 (time units of the ODE).
        dtype: floating dtype of the returned tensors.

    Returns:
        t: tensor ``[n_points]``, the times ``linspace(0, t_max, n_points)``.
        y_clean: tensor ``[n_points, 2]``, the exact trajectory at ``t``.
        y_noisy: tensor ``[n_points, 2]``, ``y_clean`` plus noise.

    Raises:
        ValueError: if ``n_points < 2``, ``noise_std < 0`` or ``t_max <= 0``.
    """
    if n_points < 2:
        raise ValueError(f"n_points must be at least 2, got {n_points}")
    if not noise_std >= 0.0:
        raise ValueError(f"noise_std must be non-negative, got {noise_std}")
    if not t_max > 0.0:
        raise ValueError(f"t_max must be positive, got {t_max}")
    t = np.linspace(0.0, t_max, n_points)
    y_clean = _spiral_trajectory(t)
    rng = np.random.default_rng(seed)
    y_noisy = y_clean + noise_std * rng.standard_normal(y_clean.shape)
    return (
        torch.from_numpy(t).to(dtype),
        torch.from_numpy(y_clean).to(dtype),
        torch.from_numpy(y_noisy).to(dtype),
    )
