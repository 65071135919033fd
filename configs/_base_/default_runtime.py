# Runtime defaults shared by every training config (the engine reads these keys).
seed = 0                        # global seed; `tools/train.py --seed` overrides
deterministic = False           # torch deterministic algorithms; `--deterministic` sets it
device = "auto"                 # "auto" = cuda when available, else cpu; `--device` overrides
work_dir = None                 # None = work_dirs/<config file stem>; `--work-dir` overrides
log_interval = 10               # iterations between log lines and TensorBoard scalars
amp = dict(enabled=True, dtype="bfloat16")  # CUDA only: autocast dtype "bfloat16" or "float16" (+GradScaler)
channels_last = True            # CUDA only: NHWC memory format for conv speed
grad_clip = dict(max_norm=10.0)  # clip the global grad norm; None to disable
ema = dict(enabled=False, decay=0.9998)  # EMA of the trained weights, evaluated and saved when enabled
checkpoint = dict(
    interval=0,                 # also keep epoch_N.pth every N epochs; 0 = only last.pth and best.pth
    best_metric="auto",         # "auto" = mean of the tasks' primary metrics, or a key like "det/mAP"
    patience=None,              # early stopping: evaluations without a new best before stopping
)
metrics = dict(                 # one metric per task the model has (a task of your own adds its entry)
    seg=dict(type="SegMetric"),
    det=dict(type="CocoDetMetric"),
    cls=dict(type="ClsMetric", topk=(1, 5)),  # multi-label data (image_labels="instances"): cls/mAP instead
    depth=dict(type="DepthMetric"),  # AbsRel, RMSE, delta1 at the original resolution; delta1 picks best.pth
)
drawers = dict(                 # how each task's predictions are drawn (TensorBoard, --show-dir, predict.py)
    seg=dict(type="SegMapDrawer"),
    det=dict(type="BoxDrawer", score_thr=0.3),  # boxes scoring below are not drawn
    cls=dict(type="ClassLabelDrawer"),  # multi-label: every class with probability >= threshold=0.5
    depth=dict(type="DepthMapDrawer"),  # a colour panel next to the image
)
num_vis_images = 4              # validation images drawn to TensorBoard per evaluation
