"""Model access: the layer under both conversion and validation.

Format sniffing (formats), safe loading of PyTorch files (torch_source, pickle_scan, with the
caps in fwconv.limits), reading ONNX/TFLite/Keras models (onnx, tflite, keras) and describing
any model (describe). `fwconv.convert` and `fwconv.validators` both build on it; it imports
neither.
"""
