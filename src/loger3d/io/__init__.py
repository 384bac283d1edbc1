"""Getting frames in (sources) and results out (frame store, trajectories, point clouds, exports)."""
