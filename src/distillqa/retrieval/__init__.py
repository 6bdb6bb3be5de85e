"""Questions without a passage: the BM25 + dense passage index and its ONNX query encoder."""
