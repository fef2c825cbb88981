"""What the agent does with a model after the script succeeded (export_onnx)."""
