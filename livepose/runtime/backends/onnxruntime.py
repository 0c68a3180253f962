"""ONNX Runtime backend (CPU; the CUDA provider where onnxruntime-gpu is installed)."""
import onnxruntime

from livepose.runtime.backends import Backend


def _dim(value):
    return value if isinstance(value, int) else None


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, model_path, precision="f32", num_threads=None, max_batch=64, providers=None):
        self.check_precision(precision, model_path)
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # warnings about unused initializers are noise to users
        if num_threads:
            options.intra_op_num_threads = num_threads
        try:
            self.session = onnxruntime.InferenceSession(
                str(model_path), options, providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ValueError(f"model {model_path}: ONNX Runtime cannot load it ({error})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(
                f"model {model_path}: expected one input and one output, got "
                f"{[i.name for i in inputs]} -> {[o.name for o in outputs]}"
            )
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.input_shape = tuple(_dim(d) for d in inputs[0].shape)
        self.output_shape = tuple(_dim(d) for d in outputs[0].shape)
        fixed_batch = self.input_shape[0]
        self.max_batch = fixed_batch if fixed_batch else max_batch
        self.precision = precision

    def _run(self, batch):
        return self.session.run([self.output_name], {self.input_name: batch})[0]

    def close(self):
        self.session = None
