"""The 8-bit detector models derived on this machine from the wheels' float models.

What matters: it is derived from the wheel's file and the committed
calibration table alone (no network), the same inputs give the same bytes,
a damaged cache is not trusted, it finds what the float model finds, and a
broken install fails with a WorkbenchError that says what to do.
"""

from __future__ import annotations

import hashlib
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from workbench.deid import _detect, _models
from workbench.errors import ModelUnavailable, WorkbenchError


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty cache folder, and the module's remembered path forgotten (restored afterwards)."""
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(_models, "_paths", {})
    return tmp_path / "cache" / "models"


def _session(model) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", sorted(_models.RECIPES))
def test_derivation_is_deterministic_and_cached_with_its_digest(fresh_cache, tmp_path, name):
    recipe = _models.RECIPES[name]
    path = _models.derived(name)
    assert path.parent == fresh_cache and path.is_file() and path.name.startswith(recipe.name)
    recorded = path.with_suffix(".sha256").read_text().strip()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == recorded
    assert not list(fresh_cache.glob(".*"))  # no temporary file left behind

    again = tmp_path / "again.onnx"
    _models.derive(name, recipe.source().read_bytes(), again)
    assert again.read_bytes() == path.read_bytes()
    assert _models.describe()[f"{recipe.name}.onnx"] == recorded
    # 8 bits where the recipe says so
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > 10


def test_a_damaged_cached_model_is_derived_again(fresh_cache, monkeypatch):
    path = _models.derived("centerface")
    good = path.read_bytes()
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0xFF
    path.write_bytes(bytes(damaged))
    monkeypatch.setattr(_models, "_paths", {})
    assert _models.derived("centerface") == path
    assert path.read_bytes() == good


def test_the_model_is_quantised_except_the_first_layer_and_the_heads(fresh_cache):
    model = onnx.load(str(_models.derived("centerface")))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") > 50 and ops.count("DequantizeLinear") > 50
    float_weights = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    by_output = {o: n for n in model.graph.node for o in n.output}
    recipe = _models.RECIPES["centerface"]
    kept = recipe.keep_float(recipe.prepare(recipe.source().read_bytes()))
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    for conv in convs:
        weight = conv.input[1]
        producer = by_output.get(weight)
        quantised = producer is not None and producer.op_type == "DequantizeLinear"
        assert quantised == (conv.name not in kept), conv.name
        if not quantised:
            assert weight in float_weights
    assert {o.name for o in model.graph.output} == set(_models.OUTPUTS)


def test_the_8_bit_model_scores_faces_as_the_float_model_does(fresh_cache):
    from skimage import data as skimage_data
    from workbench._synth import synth_pixels

    frame = synth_pixels(np.random.default_rng(3), 1280, 960)
    face = skimage_data.astronaut()[20:220, 130:310]  # her head, about 150 px of face
    frame[300:500, 500:680] = face
    recipe = _models.RECIPES["centerface"]
    float_session = _session(recipe.prepare(recipe.source().read_bytes()))
    int8_session = _session(_models.derived("centerface"))
    blob = np.ascontiguousarray(frame.transpose(2, 0, 1)[None], dtype=np.float32)
    heat_float = float_session.run(["537"], {"input.1": blob})[0][0, 0]
    heat_int8 = int8_session.run(["537"], {"input.1": blob})[0][0, 0]
    assert heat_float.max() > 0.5
    # The peak is the same cell, at nearly the same score...
    assert np.unravel_index(heat_int8.argmax(), heat_int8.shape) == np.unravel_index(heat_float.argmax(),
                                                                                     heat_float.shape)
    assert abs(float(heat_int8.max()) - float(heat_float.max())) < 0.1
    # ...and skin far from the face stays below the detection threshold in both.
    assert heat_int8[:, :100].max() < _detect.FACE_THRESHOLD and heat_float[:, :100].max() < _detect.FACE_THRESHOLD


def test_without_onnx_the_model_cannot_be_derived_and_says_so(fresh_cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ModelUnavailable, match="onnx package") as caught:
        _models.derived("centerface")
    assert isinstance(caught.value, WorkbenchError)


def test_an_unwritable_cache_falls_back_to_a_private_folder(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("WORKBENCH_CACHE", str(blocked))
    monkeypatch.setattr(_models, "_paths", {})
    path = _models.derived("centerface")
    assert path.is_file() and blocked not in path.parents
    assert path.with_suffix(".sha256").is_file()


def test_a_failed_derivation_leaves_nothing_and_raises(fresh_cache, monkeypatch):
    def broken(recipe, model, out):
        out.write_bytes(b"half a model")
        raise RuntimeError("quantiser failed")

    monkeypatch.setattr(_models, "_quantize", broken)
    with pytest.raises(ModelUnavailable, match="could not be derived"):
        _models.derived("centerface")
    assert not [p for p in fresh_cache.iterdir()]
