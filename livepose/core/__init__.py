"""The numeric core: pure numpy geometry, crops, decoding, result types, model metadata and
agreement measures. No I/O, no runtime, no threads: everything else builds on it."""
