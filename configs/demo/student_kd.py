# CPU demo: the demo's default KD recipe. Today the plain per-task output losses of student_kd_plain.py;
# issue #17 replaces a task's soft loss here when a stronger one wins on the val split.
_base_ = "./student_kd_plain.py"
