"""Loading and running models: the inference backends, the one way to open a model file, the
person detector, the pose estimator, and where model files come from (flags, engines/, cache,
download)."""
