"""Classroom workshops: JupyterHub with KubeSpawner on the course cluster, one namespace per student, a progress board."""
