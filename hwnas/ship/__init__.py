"""Ship a searched architecture: train it stand-alone (``child``) and export it to ONNX, TFLite or TensorRT with parity
and measured latency checked (``export``)."""
