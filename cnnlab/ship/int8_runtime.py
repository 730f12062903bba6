"""The int8 model's runtime: ONNX Runtime, an optional extra, asked for only when an int8
model is written or run."""

from __future__ import annotations

from cnnlab.errors import ConfigError, RunFolderError


def require_ort() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ConfigError("int8 export needs ONNX Runtime: pip install 'cnnlab[int8]'") from None


def session(model: bytes, source: object = "the int8 model"):
    """An ONNX Runtime session on `model`; a file that is no model is one line naming
    `source`."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initializers are not the user's
    try:
        return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own types for a damaged or foreign file
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise RunFolderError(f"{source} is not a model ONNX Runtime can run ({detail}): "
                             "export it again with `cnnlab export RUN_DIR --int8`") from None
