"""Streams: frame sources, the threaded pipeline, the stream core (run_stream), the per-frame
work, sinks (video, JSON lines, preview, progress), drawing and the stage benchmark."""
