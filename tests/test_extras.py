"""What the optional extras bring is asked for by name when it is missing, not by a traceback
from deep inside an import: the image has no eval extra, and a deployment may leave out onnx."""

import sys
from pathlib import Path

import pytest

from app.embedding import onnx_export
from app.evaluation import report


def test_an_onnx_export_without_the_onnx_package_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real_find_spec = onnx_export.importlib.util.find_spec
    monkeypatch.setattr(
        onnx_export.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "onnx" else real_find_spec(name, *a),
    )
    source = tmp_path / "model"
    source.mkdir()
    (source / "config.json").write_text("{}")
    with pytest.raises(RuntimeError, match=r"onnx extra .*RELATED_EMBEDDING_BACKEND=torch"):
        onnx_export.ensure_export("m", source, tmp_path / "cache", quantized=True)
    assert not (tmp_path / "cache").exists()  # nothing half-made left behind


def test_the_eval_chart_without_matplotlib_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import raises ModuleNotFoundError
    with pytest.raises(RuntimeError, match=r"the eval extra"):
        report.chart(None, tmp_path / "chart.png")  # type: ignore[arg-type]
