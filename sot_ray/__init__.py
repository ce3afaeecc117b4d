"""sot-ray: student-oriented teacher training (SoTeacher) swept at cluster scale with Ray."""

__version__ = "0.1.0"
