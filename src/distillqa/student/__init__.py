"""The student reader: features and postprocessing, the model, training, metrics and evaluation."""
