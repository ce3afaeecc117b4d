"""Ray Tune + Ray Train: sweeps of teachers and students. The only package that imports Ray."""
