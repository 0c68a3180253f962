"""Many videos: `livepose batch`. inputs (what to process, output names), status (the resumable
record), worker (one video -> output files), parquet (the Parquet schema), local and
ray_executor (where workers run), run (the driver that commits outputs)."""
