"""INT8 pose models for the CPU: calibration crops from the user's own people, NNCF's
accuracy-controlled quantisation scored on OpenVINO, and the metadata that lets `open_model`
pick the result automatically (`livepose quantize`, `fetch-models --int8`).

Sits beside `tensorrt/` (above `runtime`): it reads media like the engine builder does and runs
the candidate models through the runtime's OpenVINO backend. Needs the `int8` extra (nncf).
"""

DEFAULT_MAX_DROP = 0.01  # mean OKS vs f32 at least 0.99
DEFAULT_MAX_REVERTS = 16  # NNCF steps returning a group of layers to f32; each compiles a candidate
