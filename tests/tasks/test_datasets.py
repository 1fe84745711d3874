"""Tests for torchnode.tasks.datasets: shipped tables, digits, IDX, synthetic tasks."""

from __future__ import annotations

import gzip
import math
import struct
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

from torchnode.tasks import datasets as ds

# ---------------------------------------------------------------------------
# Shipped tables
# ---------------------------------------------------------------------------


def test_package_data_reachable_through_importlib_resources() -> None:
    data = resources.files("torchnode.tasks") / "data"
    for name in ("hare_lynx.csv", "sunspots.csv"):
        text = (data / name).read_text("utf-8")
        assert text.startswith("#"), f"{name} lost its citation header"


def test_hare_lynx_shapes_and_known_values() -> None:
    years, pelts = ds.load_hare_lynx()
    assert years.dtype == np.float64 and pelts.dtype == np.float64
    assert years.shape == (21,) and pelts.shape == (21, 2)
    np.testing.assert_array_equal(years, np.arange(1900, 1921, dtype=np.float64))
    by_year = dict(zip(years.astype(int).tolist(), pelts.tolist()))
    assert by_year[1900] == [30.0, 4.0]
    assert by_year[1903] == [77.4, 35.2]
    assert by_year[1915] == [19.5, 51.1]
    assert by_year[1920] == [24.7, 8.6]
    assert pelts[:, 0].max() == 77.4 and pelts[:, 1].max() == 59.4


def test_hare_lynx_citation_kept() -> None:
    text = (resources.files("torchnode.tasks") / "data" / "hare_lynx.csv").read_text()
    assert "Hewitt" in text and "MacLulich" in text


def test_sunspots_shapes_and_known_values() -> None:
    years, values = ds.load_sunspots()
    assert years.dtype == np.float64 and values.dtype == np.float64
    assert years.shape == (309,) and values.shape == (309,)
    np.testing.assert_array_equal(years, np.arange(1700, 2009, dtype=np.float64))
    # Values of statsmodels.datasets.sunspots (statsmodels 0.15.0).
    expected = {
        1700: 5.0,
        1778: 154.4,
        1800: 14.5,
        1850: 66.6,
        1900: 9.5,
        1957: 190.2,
        1989: 157.6,
        2000: 119.6,
        2008: 2.9,
    }
    by_year = dict(zip(years.astype(int).tolist(), values.tolist()))
    for year, value in expected.items():
        assert by_year[year] == value, year
    assert values.max() == 190.2 and values.min() >= 0.0
    assert math.isclose(values.sum(), 15373.4, abs_tol=1e-6)


def test_sunspots_citation_header() -> None:
    text = (resources.files("torchnode.tasks") / "data" / "sunspots.csv").read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    joined = " ".join(header)
    assert "SIDC" in joined and "NOAA" in joined and "Public domain" in joined
    first_data_line = next(ln for ln in text.splitlines() if not ln.startswith("#"))
    assert first_data_line == "year,sunspots"


# ---------------------------------------------------------------------------
# Digits
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_default() -> tuple[torch.Tensor, ...]:
    return ds.load_digits_split()


def test_digits_sizes_dtypes_range(digits_default: tuple[torch.Tensor, ...]) -> None:
    x_train, y_train, x_test, y_test = digits_default
    assert x_train.shape == (1438, 1, 8, 8) and x_test.shape == (359, 1, 8, 8)
    assert y_train.shape == (1438,) and y_test.shape == (359,)
    assert x_train.dtype == torch.float32 and x_test.dtype == torch.float32
    assert y_train.dtype == torch.int64 and y_test.dtype == torch.int64
    for x in (x_train, x_test):
        assert x.min() == 0.0 and x.max() == 1.0
        # pixel / 16: every value is a multiple of 1/16
        assert torch.equal(x * 16, (x * 16).round())
    assert set(y_train.tolist()) == set(range(10)) == set(y_test.tolist())


def test_digits_deterministic_and_seed_dependent(
    digits_default: tuple[torch.Tensor, ...],
) -> None:
    again = ds.load_digits_split(seed=0)
    for a, b in zip(digits_default, again):
        assert torch.equal(a, b)
    other = ds.load_digits_split(seed=1)
    assert not torch.equal(digits_default[2], other[2])


def test_digits_stratified(digits_default: tuple[torch.Tensor, ...]) -> None:
    _, y_train, _, y_test = digits_default
    train_counts = torch.bincount(y_train, minlength=10)
    test_counts = torch.bincount(y_test, minlength=10)
    totals = train_counts + test_counts
    for total, n_test in zip(totals.tolist(), test_counts.tolist()):
        assert n_test == round(0.2 * total)


def test_digits_disjoint_and_complete(
    digits_default: tuple[torch.Tensor, ...],
) -> None:
    x_train, _, x_test, _ = digits_default
    from sklearn.datasets import load_digits

    n_total = load_digits().images.shape[0]
    assert x_train.shape[0] + x_test.shape[0] == n_total == 1797
    # Split by index: train and test come from disjoint index sets covering all.
    # Check via row bytes counted with multiplicity (digits has a few duplicates).
    all_rows = torch.cat([x_train, x_test]).reshape(n_total, -1)
    reference = torch.from_numpy(load_digits().images.astype(np.float32) / 16)
    reference = reference.reshape(n_total, -1)

    def counts(rows: torch.Tensor) -> dict[bytes, int]:
        out: dict[bytes, int] = {}
        for row in rows.numpy():
            out[row.tobytes()] = out.get(row.tobytes(), 0) + 1
        return out

    assert counts(all_rows) == counts(reference)


def test_digits_other_fraction() -> None:
    x_train, _, x_test, y_test = ds.load_digits_split(seed=3, test_fraction=0.5)
    assert x_train.shape[0] + x_test.shape[0] == 1797
    assert abs(x_test.shape[0] - 1797 / 2) <= 10
    assert torch.bincount(y_test, minlength=10).min() > 0


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_digits_bad_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match="test_fraction"):
        ds.load_digits_split(test_fraction=fraction)


# ---------------------------------------------------------------------------
# IDX files
# ---------------------------------------------------------------------------


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = bytes([0, 0, type_code, array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4"}
    return header + array.astype(dtype[type_code]).tobytes()


def write_idx(path: Path, array: np.ndarray, type_code: int = 0x08) -> Path:
    raw = idx_bytes(array, type_code)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip_images_and_labels(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=5, dtype=np.uint8)
    got_images = ds.read_idx(write_idx(tmp_path / f"img-idx3-ubyte{suffix}", images))
    got_labels = ds.read_idx(write_idx(tmp_path / f"lab-idx1-ubyte{suffix}", labels))
    assert got_images.dtype == np.uint8 and got_labels.dtype == np.uint8
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    assert got_images.flags.writeable


@pytest.mark.parametrize(
    ("type_code", "dtype"),
    [(0x09, np.int8), (0x0B, np.int16), (0x0C, np.int32), (0x0D, np.float32)],
)
def test_idx_other_element_types(
    tmp_path: Path, type_code: int, dtype: type[np.generic]
) -> None:
    array = np.arange(-6, 6).reshape(3, 4).astype(dtype)
    got = ds.read_idx(write_idx(tmp_path / "a.idx", array, type_code))
    assert got.dtype == np.dtype(dtype)
    assert got.dtype.isnative
    np.testing.assert_array_equal(got, array)


def test_idx_gzip_detected_without_gz_suffix(tmp_path: Path) -> None:
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path = tmp_path / "plainname"
    path.write_bytes(gzip.compress(idx_bytes(array)))
    np.testing.assert_array_equal(ds.read_idx(path), array)


def test_idx_bad_magic(tmp_path: Path) -> None:
    path = tmp_path / "bad-magic"
    path.write_bytes(b"\x12\x34\x08\x01" + struct.pack(">I", 2) + b"\x00\x01")
    with pytest.raises(ValueError, match=r"bad IDX magic") as info:
        ds.read_idx(path)
    assert str(path) in str(info.value)


def test_idx_unknown_type_byte(tmp_path: Path) -> None:
    path = tmp_path / "bad-type"
    path.write_bytes(b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match=r"bad-type.*unknown element type"):
        ds.read_idx(path)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_truncated_body(tmp_path: Path, suffix: str) -> None:
    raw = idx_bytes(np.zeros((4, 3, 3), dtype=np.uint8))[:-5]
    path = tmp_path / f"short{suffix}"
    path.write_bytes(gzip.compress(raw) if suffix else raw)
    with pytest.raises(ValueError, match=r"truncated IDX file") as info:
        ds.read_idx(path)
    assert str(path) in str(info.value)


def test_idx_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "short-header"
    path.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">I", 4))
    with pytest.raises(ValueError, match=r"short-header: truncated IDX file"):
        ds.read_idx(path)
    tiny = tmp_path / "tiny"
    tiny.write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match=r"tiny: truncated IDX file"):
        ds.read_idx(tiny)


def test_idx_size_mismatch_extra_bytes(tmp_path: Path) -> None:
    path = tmp_path / "long"
    path.write_bytes(idx_bytes(np.zeros(4, dtype=np.uint8)) + b"\x00\x00")
    with pytest.raises(ValueError, match=r"long: IDX size mismatch.*2 extra"):
        ds.read_idx(path)


def test_idx_truncated_gzip_stream(tmp_path: Path) -> None:
    packed = gzip.compress(idx_bytes(np.arange(100, dtype=np.uint8)))
    path = tmp_path / "cut.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(ValueError, match=r"cut\.gz: corrupt or truncated gzip"):
        ds.read_idx(path)


# ---------------------------------------------------------------------------
# Fashion-MNIST
# ---------------------------------------------------------------------------


def write_fake_fashion(
    root: Path, n_train: int = 6, n_test: int = 4
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    arrays["train_images"][0, 0, 0] = 255
    arrays["train_images"][0, 0, 1] = 0
    for key, array in arrays.items():
        write_idx(root / ds.FASHION_MNIST_FILES[key], array)
    return arrays


def test_fashion_file_names_match_debian_package() -> None:
    # As listed by `dpkg -c` on dataset-fashion-mnist 0.0~git20200523.55506a9-1.
    assert ds.FASHION_MNIST_ROOT == "/usr/share/datasets/fashion-mnist"
    assert sorted(ds.FASHION_MNIST_FILES.values()) == [
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
    ]


def test_load_fashion_mnist_from_written_files(tmp_path: Path) -> None:
    arrays = write_fake_fashion(tmp_path)
    x_train, y_train, x_test, y_test = ds.load_fashion_mnist(tmp_path)
    assert x_train.shape == (6, 1, 28, 28) and x_test.shape == (4, 1, 28, 28)
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.int64
    assert y_test.dtype == torch.int64
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    torch.testing.assert_close(
        x_train[:, 0], torch.from_numpy(arrays["train_images"]).float() / 255
    )
    assert y_train.tolist() == arrays["train_labels"].tolist()
    assert y_test.tolist() == arrays["test_labels"].tolist()


def test_load_fashion_mnist_accepts_uncompressed(tmp_path: Path) -> None:
    arrays = write_fake_fashion(tmp_path)
    for name in ds.FASHION_MNIST_FILES.values():
        gz = tmp_path / name
        (tmp_path / gz.stem).write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    _, y_train, _, _ = ds.load_fashion_mnist(str(tmp_path))
    assert y_train.tolist() == arrays["train_labels"].tolist()


def test_load_fashion_mnist_missing_names_package(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        ds.load_fashion_mnist(tmp_path)
    message = str(info.value)
    assert "dataset-fashion-mnist" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert str(tmp_path) in message


def test_load_fashion_mnist_one_missing_file(tmp_path: Path) -> None:
    write_fake_fashion(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"t10k-labels-idx1-ubyte\.gz"):
        ds.load_fashion_mnist(tmp_path)


def test_load_fashion_mnist_count_mismatch(tmp_path: Path) -> None:
    write_fake_fashion(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(5, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"6 images but .* 5 labels"):
        ds.load_fashion_mnist(tmp_path)


# ---------------------------------------------------------------------------
# Synthetic tasks
# ---------------------------------------------------------------------------


def test_crossing() -> None:
    x, y = ds.make_crossing()
    assert x.shape == (2, 1) and y.shape == (2, 1)
    assert x.dtype == torch.float32 and y.dtype == torch.float32
    assert x.flatten().tolist() == [-1.0, 1.0]
    assert y.flatten().tolist() == [1.0, -1.0]


def test_circles_shapes_radii_and_balance() -> None:
    x, labels = ds.make_circles(1001, seed=0)
    assert x.shape == (1001, 2) and labels.shape == (1001,)
    assert x.dtype == torch.float32 and labels.dtype == torch.int64
    r = x.double().norm(dim=1)
    inner, outer = r[labels == 0], r[labels == 1]
    assert inner.numel() == 500 and outer.numel() == 501
    assert inner.max() < 0.5
    assert outer.min() > 1.0 and outer.max() < 1.5
    # uniform by area: median radius of the disc is 0.5 / sqrt(2)
    assert abs(inner.median().item() - 0.5 / math.sqrt(2)) < 0.03
    # labels are shuffled, not in two blocks
    assert labels[:100].sum() not in (0, 100)


def test_circles_determinism() -> None:
    a = ds.make_circles(64, seed=5)
    b = ds.make_circles(64, seed=5)
    c = ds.make_circles(64, seed=6)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_circles_custom_radii_and_errors() -> None:
    x, labels = ds.make_circles(200, 0, inner_radius=0.2, outer_radii=(2.0, 3.0))
    r = x.norm(dim=1)
    assert r[labels == 0].max() < 0.2 and r[labels == 1].min() > 2.0
    with pytest.raises(ValueError, match="at least 2"):
        ds.make_circles(1, 0)
    with pytest.raises(ValueError, match="radii"):
        ds.make_circles(10, 0, inner_radius=1.2)


def test_spiral_shapes_and_noise() -> None:
    t, y_clean, y_noisy = ds.make_spiral(200, 0.1, seed=0, t_max=25.0)
    assert t.shape == (200,) and y_clean.shape == (200, 2)
    assert y_noisy.shape == (200, 2)
    assert t.dtype == y_clean.dtype == y_noisy.dtype == torch.float32
    assert t[0] == 0.0 and t[-1] == 25.0
    assert y_clean[0].tolist() == [2.0, 0.0]
    residual = (y_noisy - y_clean).double()
    assert abs(residual.std().item() - 0.1) < 0.015
    assert abs(residual.mean().item()) < 0.02


def test_spiral_determinism() -> None:
    a = ds.make_spiral(50, 0.05, seed=2)
    b = ds.make_spiral(50, 0.05, seed=2)
    c = ds.make_spiral(50, 0.05, seed=3)
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    assert torch.equal(a[1], c[1]) and not torch.equal(a[2], c[2])
    _, y_clean, y_noisy = ds.make_spiral(50, 0.0, seed=2)
    assert torch.equal(y_clean, y_noisy)


def test_spiral_matches_scipy_reference() -> None:
    from scipy.integrate import solve_ivp

    a = np.array([[-0.1, 2.0], [-2.0, -0.1]])
    t, y_clean, _ = ds.make_spiral(1000, 0.0, seed=0, t_max=25.0, dtype=torch.float64)
    assert y_clean.dtype == torch.float64
    reference = solve_ivp(
        lambda _t, y: (y**3) @ a,
        (0.0, 25.0),
        [2.0, 0.0],
        method="DOP853",
        t_eval=t.numpy(),
        rtol=1e-12,
        atol=1e-12,
    )
    assert reference.success
    np.testing.assert_allclose(y_clean.numpy(), reference.y.T, rtol=0, atol=1e-8)


def test_spiral_errors() -> None:
    with pytest.raises(ValueError, match="n_points"):
        ds.make_spiral(1)
    with pytest.raises(ValueError, match="noise_std"):
        ds.make_spiral(10, -0.1)
    with pytest.raises(ValueError, match="t_max"):
        ds.make_spiral(10, 0.0, 0, 0.0)
