# CPU demo: the tiny student distilled from the tiny teacher (configs/demo/teacher.py) on all four tasks, each
# with its plain output loss (KL for seg and cls, the probability MSE for det, L1 for depth): the recipe before
# issue #17 and the README's `kd` rows. The demo's default, configs/demo/student_kd.py, builds on it.
# Per task: L_t = (1 - alpha) * hard + alpha * soft;  L = sum_t ratio * L_t.
_base_ = [
    "../_base_/models/student_seedcnn-fpn_tiny.py",
    "../_base_/datasets/synthetic_64px.py",
    "../_base_/schedules/adamw_cosine-demo.py",
    "../_base_/default_runtime.py",
]
model = dict(
    _delete_=True,
    type="Distiller",
    student=_base_.model,
    teacher_checkpoint="work_dirs/demo/teacher/best.pth",  # train it first: tools/train.py configs/demo/teacher.py
    tasks=dict(
        seg=dict(alpha=0.9, ratio=1.0, loss=dict(type="PixelwiseKLLoss", temperature=2.0)),
        # det: objectness and classes compared as probabilities (Mehta & Ozturk's form; on raw logits the
        # confident-negative background dominates), summed and divided by the teacher's soft object count
        # as the hard loss divides by its positives (a mean over locations made the soft term 50-100x smaller
        # than the hard one); alpha 0.5 here, since alpha 0.9 starved det of ground truth (README, Results)
        det=dict(alpha=0.5, ratio=1.0, loss=dict(type="DetOutputMSELoss", objectness_weighted=True,
                                                 probabilities=True, normalize="teacher_objectness")),
        cls=dict(alpha=0.9, ratio=1.0, loss=dict(type="LogitKDLoss", temperature=2.0)),
        # depth: L1 between the student's and the teacher's log-depth maps (a relative error per pixel);
        # alpha 0.5 as for det, not tuned
        depth=dict(alpha=0.5, ratio=1.0, loss=dict(type="DepthKDLoss", mode="l1")),
    ),
)
