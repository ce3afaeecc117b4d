"""Parquet result tables (teachers, students), their schemas, and the summaries read from them."""

from .store import STUDENTS, TEACHERS, ResultTable, read_rows, student_row, teacher_row
from .summary import summarize

__all__ = ["STUDENTS", "TEACHERS", "ResultTable", "read_rows", "student_row", "summarize", "teacher_row"]
